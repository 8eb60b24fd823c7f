package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/gcdefaults"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redislog"
	"github.com/ext-authz/ext-authz/internal/server"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const serveUsage = `usage: ext-authz serve --config FILE [--grpc-address ADDR] [--admin-address ADDR]

Runs the server until SIGTERM or SIGINT (drains, exits 0); SIGHUP reloads the
config. The listen addresses come from the flag, else from the environment
(EXT_AUTHZ_GRPC_ADDRESS, EXT_AUTHZ_ADMIN_ADDRESS), else from the file's
server.grpc_address and admin.address.`

// listenOverrides replace the file's listen addresses; an empty address
// keeps the file's. The from fields name where each came from, for errors.
type listenOverrides struct{ grpc, grpcFrom, admin, adminFrom string }

// newListenOverrides takes each address from its flag, else its variable.
func newListenOverrides(grpcFlag, adminFlag string, getenv func(string) string) listenOverrides {
	o := listenOverrides{grpc: grpcFlag, grpcFrom: "--grpc-address", admin: adminFlag, adminFrom: "--admin-address"}
	if o.grpc == "" {
		o.grpc, o.grpcFrom = getenv(cli.EnvGRPCAddress), cli.EnvGRPCAddress
	}
	if o.admin == "" {
		o.admin, o.adminFrom = getenv(cli.EnvAdminAddress), cli.EnvAdminAddress
	}
	return o
}

// apply sets the overridden addresses on cfg, checked.
func (o listenOverrides) apply(cfg *generation.Config) error {
	var errs []error
	if o.grpc != "" {
		cfg.Server.GRPCAddress = o.grpc
		errs = append(errs, generation.ValidateAddress(o.grpcFrom, o.grpc))
	}
	if o.admin != "" {
		cfg.Admin.Address = o.admin
		errs = append(errs, generation.ValidateAddress(o.adminFrom, o.admin))
	}
	return errors.Join(errs...)
}

func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := cli.NewFlags("serve")
	path := fs.String("config", "", "config file (YAML)")
	grpcAddr := fs.String("grpc-address", "", "gRPC listen address, overrides server.grpc_address (env "+cli.EnvGRPCAddress+")")
	adminAddr := fs.String("admin-address", "", "admin listen address, overrides admin.address (env "+cli.EnvAdminAddress+")")
	if err := cli.ParseFlags(fs, serveUsage, args, stdout); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		return &cli.UsageError{Msg: "serve needs --config FILE and nothing else", Help: cli.Hint(fs.Name())}
	}
	// Before the config is loaded: a large key file loads under the
	// same memory limit the server then runs under.
	gc := gcdefaults.Apply(gcdefaults.Options{Getenv: getenv})
	ov := newListenOverrides(*grpcAddr, *adminAddr, getenv)
	cfg, err := generation.Load(*path, getenv)
	if err != nil {
		return err
	}
	if err := ov.apply(cfg); err != nil {
		return &cli.UsageError{Msg: err.Error(), Help: cli.Hint(fs.Name())}
	}
	tel, err := newTelemetry(cfg, stderr)
	if err != nil {
		return cfg.Annotate(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx) // flushes spans
	}()
	redis.SetLogger(redislog.New(tel.Logger)) // go-redis has only a global logger
	svc, err := server.New(*path, cfg, tel, server.Options{
		Getenv: getenv,
		Adjust: func(c *generation.Config) { _ = ov.apply(c) }, // checked above
	})
	if err != nil {
		return cfg.Annotate(err)
	}
	tel.Logger.Info("starting", slices.Concat([]any{"version", telemetry.Version(version)}, cfg.Describe(), gc.LogAttrs())...)
	defer func() {
		if err := svc.Close(); err != nil {
			tel.Logger.Warn("closing", "error", err)
		}
	}()
	// Loading a large policy leaves tens of MB of garbage (YAML trees,
	// decoded structs), and the collector's next goal is GOGC% of what
	// was live while loading: 5 x 33 MB for 10,000 rules, so the first
	// requests grew the heap to ~160 MB before any collection. One
	// collection now sets the goal from what the service keeps.
	runtime.GC()
	if err := svc.Listen(); err != nil {
		return err
	}
	return svc.Serve(ctx)
}

const checkConfigUsage = `usage: ext-authz check-config [--base-dir DIR] [--map-path FROM=TO]... [--allow-unset-env] FILE...

Loads and fully builds each config (reads the files it references, compiles
the rules) without serving: a file it accepts will start. Errors are
file:line: field.path: message; exit status 1 when any file is rejected.

To check a config written for the cluster on a workstation, --map-path and
--base-dir read the absolute paths of its file fields (file, files,
jwks_file, ca_file, cert_file, key_file) from local directories, and
--allow-unset-env lets ${NAME} placeholders stay unset.`

// checkConfigCommand loads and fully builds each file (reading key files,
// compiling rules) without serving, so a file it accepts will start.
func checkConfigCommand(args []string, stdout io.Writer, getenv func(string) string) error {
	fs := cli.NewFlags("check-config")
	var pm generation.PathMap
	fs.StringVar(&pm.BaseDir, "base-dir", "", "read an absolute path /P of a file field as DIR/P")
	fs.Var(&pm, "map-path", "read absolute paths under FROM from directory TO instead (repeatable; before --base-dir)")
	allowUnset := fs.Bool("allow-unset-env", false, "let ${NAME} placeholders be unset (each is replaced by a placeholder value and listed)")
	if err := cli.ParseFlags(fs, checkConfigUsage, args, stdout); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return &cli.UsageError{Msg: "check-config needs at least one FILE", Help: cli.Hint(fs.Name())}
	}
	var errs []error
	for _, path := range fs.Args() {
		env := &lenientEnv{getenv: getenv, lenient: *allowUnset}
		if err := checkConfig(path, env.get, pm.Apply); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(env.unset) > 0 {
			fmt.Fprintf(stdout, "%s: ok (unset: %s)\n", path, strings.Join(env.unset, ", "))
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return errors.Join(errs...)
}

// lenientEnv is getenv that, when lenient, answers an unset or empty
// variable with a placeholder and remembers its name.
type lenientEnv struct {
	getenv  func(string) string
	lenient bool
	unset   []string
}

func (e *lenientEnv) get(name string) string {
	v := e.getenv(name)
	if v == "" && e.lenient {
		if !slices.Contains(e.unset, name) {
			e.unset = append(e.unset, name)
		}
		return "unset-" + name
	}
	return v
}

// checkConfig builds the config at path; remap, when set, rewrites its
// file paths first.
func checkConfig(path string, getenv func(string) string, remap func(*generation.Config)) error {
	cfg, err := generation.Load(path, getenv)
	if err != nil {
		return err
	}
	if remap != nil {
		remap(cfg)
	}
	tel, err := newTelemetry(cfg, io.Discard)
	if err != nil {
		return cfg.Annotate(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	// The same compile serve and reload run, over a pool of its own.
	g, err := generation.Compile(&generation.Env{Pool: pool.New(pool.Options{}), Logger: tel.Logger, Registry: tel.Registry}, cfg)
	if err != nil {
		return cfg.Annotate(err)
	}
	return g.Release()
}

// newTelemetry builds the process's telemetry from cfg's telemetry section.
func newTelemetry(cfg *generation.Config, stderr io.Writer) (*telemetry.Telemetry, error) {
	return telemetry.New(cfg.Telemetry, stderr, telemetry.Options{Version: version, CredentialKeys: cfg.CredentialKeys()})
}
