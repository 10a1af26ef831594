// Command packer-plugin-imgforge is the Packer plugin that provides the
// imgforge builder. It registers the builder and nothing else.
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/packer-plugin-sdk/plugin"
	"github.com/hashicorp/packer-plugin-sdk/version"

	"github.com/imgforge/imgforge/packer-plugin-imgforge/builder/imgforge"
	lib "github.com/imgforge/imgforge/pkg/imgforge"
)

func main() {
	set := plugin.NewSet()
	set.RegisterBuilder(plugin.DEFAULT_NAME, new(imgforge.Builder))
	set.SetVersion(version.NewPluginVersion(lib.Version, "", ""))
	if err := set.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
