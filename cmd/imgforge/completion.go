package main

import (
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/imgforge"
)

// registerCompletions adds shell completion (imgforge completion bash|zsh|
// fish|powershell) of role names, formats, --set options and the flags
// with fixed values to the commands under root.
func registerCompletions(root *cobra.Command, c *common) {
	roles := roleCompletion(c)
	for _, cmd := range root.Commands() {
		switch cmd.Name() {
		case "build":
			cmd.ValidArgsFunction = roles(-1)
			flagValues(cmd, "format", commaList(format.Names()))
			flagValues(cmd, "progress", fixed(progressAuto, progressPlain, progressQuiet))
		case "plan":
			cmd.ValidArgsFunction = roles(1)
		case "push", "seed":
			cmd.ValidArgsFunction = roles(1)
		case "run", "verify":
			// A role, or an image file.
			cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				names, _ := roles(1)(cmd, args, toComplete)
				return names, cobra.ShellCompDirectiveDefault
			}
			flagValues(cmd, "format", fixed(imgforge.ImageFormats...))
		case "doctor":
			flagValues(cmd, "format", commaList(format.Names()))
		case "cache":
			for _, sub := range cmd.Commands() {
				if sub.Name() == "ls" {
					sub.ValidArgsFunction = roles(-1)
				}
			}
		}
		if cmd.Flags().Lookup("set") != nil {
			_ = cmd.RegisterFlagCompletionFunc("set", setCompletion(c))
		}
		for _, dirFlag := range []string{"roles", "images", "output-dir", "cache-dir"} {
			if cmd.Flags().Lookup(dirFlag) != nil {
				_ = cmd.MarkFlagDirname(dirFlag)
			}
		}
		if f := cmd.Flags().Lookup("output"); f != nil && f.Shorthand == "o" {
			flagValues(cmd, "output", fixed("text", "json"))
		}
	}
}

type completeFunc = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)

func flagValues(cmd *cobra.Command, name string, f completeFunc) {
	if cmd.Flags().Lookup(name) != nil {
		_ = cmd.RegisterFlagCompletionFunc(name, f)
	}
}

func fixed(values ...string) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// commaList completes the last element of a comma-separated list of
// values, leaving out those given already.
func commaList(values []string) completeFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		given, prefix := "", ""
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
			given, prefix = toComplete[:i+1], toComplete[:i+1]
		}
		have := strings.Split(strings.TrimSuffix(given, ","), ",")
		var out []string
		for _, v := range values {
			if !slices.Contains(have, v) {
				out = append(out, prefix+v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// roleCompletion completes role names (those of --roles and the embedded
// ones) for a command that takes at most max of them (-1: any number),
// leaving out those given already.
func roleCompletion(c *common) func(max int) completeFunc {
	return func(max int) completeFunc {
		return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if max >= 0 && len(args) >= max {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			cat, err := c.catalog()
			if err != nil {
				return nil, cobra.ShellCompDirectiveError
			}
			var out []string
			for _, r := range cat.RoleNames() {
				if !slices.Contains(args, r) {
					out = append(out, r)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
}

// setCompletion completes --set OPTION=VALUE with the options of the
// roles given (of every role when none is), each choice described.
func setCompletion(c *common) completeFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		cat, err := c.catalog()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		roles := args
		if len(roles) == 0 {
			roles = cat.RoleNames()
		}
		seen := map[string]bool{}
		var out []string
		for _, name := range roles {
			r, _, err := cat.Role(name)
			if err != nil {
				continue // an argument that is not a role (push's REF)
			}
			for _, o := range r.Options {
				choices := make([]string, 0, len(o.Choices))
				for ch := range o.Choices {
					choices = append(choices, ch)
				}
				sort.Strings(choices)
				for _, ch := range choices {
					v := o.Name + "=" + ch
					if seen[v] {
						continue
					}
					seen[v] = true
					desc := name + ": " + o.Choices[ch].Description
					if ch == o.Default {
						desc += " (default)"
					}
					out = append(out, v+"\t"+strings.TrimSpace(desc))
				}
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
