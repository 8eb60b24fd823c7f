package telemetry

import (
	"runtime"
	"runtime/debug"
)

// Version is the binary's version: stamped (main.version, set with
// -ldflags -X) when set, else the module version and VCS revision Go
// recorded ("-dirty" with local changes).
func Version(stamped string) string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return bi.Main.Version + " " + rev
		}
		return bi.Main.Version
	}
	return "unknown"
}

// buildInfo is the ext_authz_build_info gauge's labels: the stamped
// version (else the module's), the Go version, and the VCS revision the
// binary was built from ("-dirty" with local changes).
func buildInfo(stamped string) (ver, goVersion, revision string) {
	ver, goVersion, revision = stamped, runtime.Version(), "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if ver == "" {
			ver = "unknown"
		}
		return ver, goVersion, revision
	}
	if ver == "" {
		ver = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && revision != "unknown" {
		revision += "-dirty"
	}
	return ver, goVersion, revision
}
