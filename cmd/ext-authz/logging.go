package main

import (
	"io"
	"log/slog"
)

// newLogger is the process logger: JSON lines on stderr.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
