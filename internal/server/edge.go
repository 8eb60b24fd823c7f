package server

import (
	"fmt"
	"net"

	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/grpcedge"
)

// edgeListener wraps the gRPC listener with the server.edge bounds; it
// returns the connection cap in force.
func (s *Server) edgeListener(lis net.Listener, c *generation.ServerConfig) (*grpcedge.Listener, int, error) {
	e := c.Edge
	want := e.MaxConnections
	if want < 0 {
		want = 0
	}
	maxConns, err := grpcedge.ConnectionCap(want, e.FDReserve)
	if err != nil {
		return nil, 0, fmt.Errorf("server.edge: %w", err)
	}
	opts := grpcedge.Options{
		MaxConnections:   maxConns,
		ResetBudget:      e.StreamResetBudget,
		EarlyResetWindow: e.EarlyResetWindow,
		AbuseCooldown:    e.AbuseCooldown,
		WriteTimeout:     max(e.WriteTimeout, 0),
		// What grpc-go would set on a bare TCP connection.
		TCPUserTimeout: c.Keepalive.Timeout,
		Metrics:        grpcedge.NewMetrics(s.registry),
	}
	return grpcedge.NewListener(lis, opts), maxConns, nil
}
