package metrics

import (
	"errors"
	"fmt"
	"math"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
)

// DecodeWrite reads a remote-write 1.0 body (the wire format encode writes, see
// there) back into samples: what a receiver of the shipper's pushes sees.
// Labels must come sorted by name, as the protocol asks.
func DecodeWrite(body []byte) ([]model.Sample, error) {
	raw, err := s2.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var out []model.Sample
	err = fields(raw, func(num protowire.Number, ts []byte, _ uint64) error {
		if num != 1 {
			return fmt.Errorf("WriteRequest field %d", num)
		}
		s := model.Sample{Metric: model.Metric{}}
		last := ""
		err := fields(ts, func(num protowire.Number, v []byte, _ uint64) error {
			switch num {
			case 1:
				var name, value string
				if err := fields(v, func(num protowire.Number, v []byte, _ uint64) error {
					if num == 1 {
						name = string(v)
					} else {
						value = string(v)
					}
					return nil
				}); err != nil {
					return err
				}
				if name <= last {
					return fmt.Errorf("label %q after %q: labels not sorted", name, last)
				}
				last = name
				s.Metric[model.LabelName(name)] = model.LabelValue(value)
			case 2:
				return fields(v, func(num protowire.Number, _ []byte, x uint64) error {
					if num == 1 {
						s.Value = model.SampleValue(math.Float64frombits(x))
					} else {
						s.Timestamp = model.Time(int64(x))
					}
					return nil
				})
			}
			return nil
		})
		out = append(out, s)
		return err
	})
	return out, err
}

// fields calls f with each field of the protobuf message b: its number
// and its bytes (length-delimited) or number (varint, fixed64).
func fields(b []byte, f func(num protowire.Number, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errors.New("bad protobuf tag")
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		default:
			return fmt.Errorf("unexpected protobuf wire type %d", typ)
		}
		if n < 0 {
			return fmt.Errorf("bad protobuf field %d", num)
		}
		b = b[n:]
		if err := f(num, v, x); err != nil {
			return err
		}
	}
	return nil
}
