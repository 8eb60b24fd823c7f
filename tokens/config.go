package tokens

import (
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// DefaultMaxTokenBytes is the default size limit of a credential; longer
// ones are rejected with ErrTooLarge before any parsing.
const DefaultMaxTokenBytes = 8 << 10

func errorf(path, format string, args ...any) error {
	return yamlfile.Errorf(path, format, args...)
}

func checkMaxBytes(n int) error {
	if n < 0 {
		return errorf("max_token_bytes", "must not be negative")
	}
	return nil
}

func maxBytesOr(n int) int {
	if n == 0 {
		return DefaultMaxTokenBytes
	}
	return n
}
