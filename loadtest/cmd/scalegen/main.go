package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scalegen:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	kind     string
	n        int
	dir      string
	poolSize int
}

func run(args []string, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("scalegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kind, "kind", "", "what to scale: rules, keys or descriptors")
	fs.IntVar(&o.n, "n", 0, "how many rules, keys or descriptor entries")
	fs.StringVar(&o.dir, "dir", "", "output directory (created)")
	fs.IntVar(&o.poolSize, "pool-size", 1000, "keys: how many of the keys the pool holds, spread over the file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.dir == "":
		return errors.New("-dir is required")
	case o.n < 2:
		return errors.New("-n must be at least 2")
	case o.poolSize < 1:
		return errors.New("-pool-size must be at least 1")
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	switch o.kind {
	case "rules":
		return writeFile(filepath.Join(o.dir, "config.yaml"), func(w *bufio.Writer) {
			writeConfig(w, o, func(w *bufio.Writer) { writeFillerRules(w, o.n-1) })
		})
	case "keys":
		if err := writeFile(filepath.Join(o.dir, "api-keys.yaml"), func(w *bufio.Writer) { writeKeys(w, o.n) }); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(o.dir, "apikey-pool.txt"), func(w *bufio.Writer) { writePool(w, o.n, o.poolSize) }); err != nil {
			return err
		}
		return writeFile(filepath.Join(o.dir, "config.yaml"), func(w *bufio.Writer) { writeConfig(w, o, nil) })
	case "descriptors":
		if err := os.MkdirAll(filepath.Join(o.dir, "ratelimit"), 0o755); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(o.dir, "ratelimit", "loadtest.yaml"), func(w *bufio.Writer) { writeDescriptors(w, o.n) }); err != nil {
			return err
		}
		return writeFile(filepath.Join(o.dir, "config.yaml"), func(w *bufio.Writer) { writeConfig(w, o, nil) })
	}
	return fmt.Errorf("unknown -kind %q (rules, keys, descriptors)", o.kind)
}

// writeFile writes path through a buffered writer filled by fill.
func writeFile(path string, fill func(*bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	fill(w)
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// writeConfig writes an ext-authz config like loadtest/config/memory.yaml.
// The request of the run is decided by its last rule: "api" (JWT, or API
// key for kind keys) or, for kind descriptors, "limited" with two
// descriptors matched against the N entries. fillers writes rules before
// it.
func writeConfig(w *bufio.Writer, o options, fillers func(*bufio.Writer)) {
	fmt.Fprintf(w, `# Written by loadtest/cmd/scalegen -kind %s -n %d (loadtest/scale.sh).
server:
  grpc_address: "127.0.0.1:${LOADTEST_GRPC_PORT}"
  drain_delay: 1ms
  drain_timeout: 2s
  reload_interval: -1s
admin:
  address: "127.0.0.1:${LOADTEST_ADMIN_PORT}"
  pprof: true

authenticators:
  - name: jwt
    source: {authorization: Bearer}
    strip_credential: true
    jwt:
      issuers:
        - issuer: https://issuer.quickstart.example
          audiences: [quickstart]
          jwks_file: examples/quickstart/keys/jwks.json
`, o.kind, o.n)
	auth := "jwt"
	if o.kind == "keys" {
		auth = "api-keys"
		fmt.Fprintf(w, `  - name: api-keys
    source: {header: x-api-key}
    strip_credential: true
    challenge_scheme: ApiKey
    api_key:
      file: %s
`, filepath.Join(o.dir, "api-keys.yaml"))
	}
	if o.kind == "descriptors" {
		fmt.Fprintf(w, `
rate_limit:
  files: [%s/]
  backend: memory
`, filepath.Join(o.dir, "ratelimit"))
	}
	fmt.Fprint(w, `
policy:
  realm: loadtest
  rules:
`)
	if fillers != nil {
		fillers(w)
	}
	if o.kind == "descriptors" {
		fmt.Fprint(w, `    - name: limited
      match: {hosts: [example.com], path: {prefix: /limited/}}
      action: authenticate
      authenticators: [jwt]
      rate_limits:
        domain: loadtest
        descriptors:
          - actions:
              - generic_key: {descriptor_value: limited}
              - identity: {field: subject, descriptor_key: user}
          - actions:
              - generic_key: {descriptor_value: limited-global}
`)
		return
	}
	fmt.Fprintf(w, `    - name: api
      match: {hosts: [example.com], path: {prefix: /api/}}
      action: authenticate
      authenticators: [%s]
`, auth)
}

// writeFillerRules writes n rules that the run's request (example.com,
// /api/...) does not match: ten per host, every tenth on example.com
// itself, of every path kind (prefix, exact, regex, prefix with a method),
// so the index's host, prefix, exact and regex paths all grow.
func writeFillerRules(w *bufio.Writer, n int) {
	for i := range n {
		host := "svc" + strconv.Itoa(i/10) + ".example.com"
		if i%10 == 9 {
			host = "example.com"
		}
		var path, methods string
		switch i % 10 {
		case 0, 1, 2, 3, 9:
			path = fmt.Sprintf("{prefix: /p%d/}", i)
		case 4, 5, 6:
			path = fmt.Sprintf("{exact: /e%d}", i)
		case 7:
			path = fmt.Sprintf("{regex: '^/r%d/[a-z]+$'}", i)
		case 8:
			path = fmt.Sprintf("{prefix: /m%d/}", i)
			methods = ", methods: [POST]"
		}
		fmt.Fprintf(w, "    - name: filler-%d\n      match: {hosts: [%s], path: %s%s}\n      action: allow\n", i, host, path, methods)
	}
}

// Key returns the API key number i of the scale run.
func Key(i int) string { return "scale-key-" + strconv.Itoa(i) }

// writeKeys writes n keys in the plain format of the API key file
// (tokens/apikey_fast.go), as a generator would.
func writeKeys(w *bufio.Writer, n int) {
	fmt.Fprintln(w, "# Test keys of the scale run (loadtest/cmd/scalegen); the keys are scale-key-<i>.")
	fmt.Fprintln(w, "keys:")
	for i := range n {
		sum := sha256.Sum256([]byte(Key(i)))
		fmt.Fprintf(w, "  - subject: user-%d\n    sha256: %s\n    app_id: app-%d\n    scopes: [read, write]\n",
			i, hex.EncodeToString(sum[:]), i%10)
	}
}

// writePool writes min(n, size) keys spread evenly over the file, the
// last key included.
func writePool(w *bufio.Writer, n, size int) {
	size = min(size, n)
	for j := range size {
		i := n - 1 - j*(n/size)
		fmt.Fprintln(w, Key(i))
	}
}

// writeDescriptors writes an envoyproxy/ratelimit rules file with n
// top-level entries: n-2 fillers (every tenth nested, every tenth a
// wildcard) and, last, the two entries the run's rule sends, as
// loadtest/config/ratelimit/loadtest.yaml has them.
func writeDescriptors(w *bufio.Writer, n int) {
	fmt.Fprintln(w, "# Written by loadtest/cmd/scalegen (loadtest/scale.sh).")
	fmt.Fprintln(w, "domain: loadtest")
	fmt.Fprintln(w, "descriptors:")
	for i := range n - 2 {
		switch i % 10 {
		case 3:
			fmt.Fprintf(w, "  - key: generic_key\n    value: filler-%d\n    descriptors:\n      - key: user\n        rate_limit: {unit: second, requests_per_unit: 100}\n", i)
		case 7:
			fmt.Fprintf(w, "  - key: generic_key\n    value: wild-%d-*\n    rate_limit: {unit: minute, requests_per_unit: 100}\n", i)
		default:
			fmt.Fprintf(w, "  - key: generic_key\n    value: filler-%d\n    rate_limit: {unit: second, requests_per_unit: 100}\n", i)
		}
	}
	fmt.Fprint(w, `  - key: generic_key
    value: limited
    descriptors:
      - key: user
        rate_limit:
          unit: second
          requests_per_unit: 1000
  - key: generic_key
    value: limited-global
    rate_limit:
      unit: second
      requests_per_unit: 10000000
`)
}
