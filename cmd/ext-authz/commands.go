package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/internal/pool"
	"github.com/ext-authz/ext-authz/internal/redislog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func versionString() string {
	if version != "" {
		return version
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

func serveCommand(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return &usageError{err.Error()}
	}
	if *path == "" || fs.NArg() > 0 {
		return &usageError{"serve needs --config FILE and nothing else"}
	}
	cfg, err := loadConfig(*path, getenv)
	if err != nil {
		return err
	}
	tel, err := newTelemetry(cfg, stderr)
	if err != nil {
		return cfg.annotate(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.shutdown(ctx) // flushes spans
	}()
	redis.SetLogger(redislog.New(tel.logger)) // go-redis has only a global logger
	svc, err := newService(*path, cfg, getenv, tel)
	if err != nil {
		return cfg.annotate(err)
	}
	tel.logger.Info("starting", append([]any{"version", versionString()}, cfg.describe()...)...)
	defer func() {
		if err := svc.close(); err != nil {
			tel.logger.Warn("closing", "error", err)
		}
	}()
	if err := svc.listen(); err != nil {
		return err
	}
	return svc.serve(ctx)
}

// checkConfigCommand loads and fully builds each file (reading key files,
// compiling rules) without serving, so a file it accepts will start.
func checkConfigCommand(args []string, stdout io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{"check-config needs at least one FILE"}
	}
	var errs []error
	for _, path := range args {
		if err := checkConfig(path, getenv); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return errors.Join(errs...)
}

func checkConfig(path string, getenv func(string) string) error {
	cfg, err := loadConfig(path, getenv)
	if err != nil {
		return err
	}
	tel, err := newTelemetry(cfg, io.Discard)
	if err != nil {
		return cfg.annotate(err)
	}
	defer func() { _ = tel.shutdown(context.Background()) }()
	// The same compile serve and reload run, over a pool of its own.
	g, err := compile(newBuildEnv(tel, pool.New(pool.Options{})), cfg)
	if err != nil {
		return cfg.annotate(err)
	}
	return g.release()
}
