//go:build !linux

package grpcedge

import (
	"net"
	"time"
)

func setTCPUserTimeout(net.Conn, time.Duration) {}
