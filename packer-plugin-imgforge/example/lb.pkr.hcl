# Builds the lb role (HAProxy + keepalived) with the imgforge builder:
#   packer plugins install --path packer-plugin-imgforge github.com/imgforge/imgforge
#   packer build -var output_dir=out example/lb.pkr.hcl
# gives the same files, with the same digests, as
#   imgforge build lb --output-dir out
# with the same SOURCE_DATE_EPOCH, mirror and definitions. The README shows
# this template from its packer block on: keep the two the same.

packer {
  required_plugins {
    imgforge = {
      source  = "github.com/imgforge/imgforge"
      version = ">= 0.1.0"
    }
  }
}

variable "output_dir" {
  type    = string
  default = "out"
}

variable "source_date_epoch" {
  type    = number
  default = 0 # the environment's SOURCE_DATE_EPOCH, else the image definition's
}

variable "mirror" {
  type    = string
  default = "" # the image definition's, else the host's Debian mirror
}

source "imgforge" "lb" {
  role              = "lb"
  output_dir        = var.output_dir
  source_date_epoch = var.source_date_epoch
  mirror            = var.mirror
  # roles_dir = "${path.root}/roles"  # your own role definitions
  # formats   = ["raw", "qcow2"]      # default: the image definition's outputs
}

build {
  sources = ["source.imgforge.lb"]
}
