package grpcedge_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ext-authz/ext-authz/internal/grpcedge"
	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

func TestConfigApplyDefaults(t *testing.T) {
	var zero grpcedge.Config
	zero.ApplyDefaults()
	want := grpcedge.Config{
		MaxConnections:    2048,
		FDReserve:         256,
		HandshakeTimeout:  5 * time.Second,
		MaxConnectionIdle: 2 * time.Minute,
		CallDeadline:      30 * time.Second,
		WriteTimeout:      10 * time.Second,
		StreamResetBudget: grpcedge.DefaultResetBudget,
		AbuseCooldown:     2 * time.Second,
		EarlyResetWindow:  grpcedge.DefaultEarlyResetWindow,
	}
	if zero != want {
		t.Errorf("defaults = %+v, want %+v", zero, want)
	}

	// Negative means "off" for these: defaults must not overwrite it.
	off := grpcedge.Config{MaxConnections: -1, MaxConnectionIdle: -1, CallDeadline: -1, WriteTimeout: -1, StreamResetBudget: -1, AbuseCooldown: -1}
	off.ApplyDefaults()
	if off.MaxConnections != -1 || off.MaxConnectionIdle != -1 || off.CallDeadline != -1 ||
		off.WriteTimeout != -1 || off.StreamResetBudget != -1 || off.AbuseCooldown != -1 {
		t.Errorf("ApplyDefaults replaced a negative (disabled) value: %+v", off)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		give      grpcedge.Config
		wantPaths []string
	}{
		{name: "zero", give: grpcedge.Config{}},
		{name: "disabled limits are valid", give: grpcedge.Config{MaxConnections: -1, WriteTimeout: -1, StreamResetBudget: -1}},
		{name: "negative fd_reserve", give: grpcedge.Config{FDReserve: -1}, wantPaths: []string{"fd_reserve"}},
		{name: "negative handshake_timeout", give: grpcedge.Config{HandshakeTimeout: -time.Second}, wantPaths: []string{"handshake_timeout"}},
		{
			name:      "all three",
			give:      grpcedge.Config{FDReserve: -1, HandshakeTimeout: -1, EarlyResetWindow: -1},
			wantPaths: []string{"fd_reserve", "handshake_timeout", "early_reset_window"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if len(tt.wantPaths) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors at %v", tt.wantPaths)
			}
			var fe *yamlfile.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, not a yamlfile.FieldError", err)
			}
			for _, p := range tt.wantPaths {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("Validate() = %v, does not name %s", err, p)
				}
			}
		})
	}
}
