package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/tokens"
)

// Store reads UDB session records (Redis hashes) with HGETALL.
type Store struct {
	client goredis.UniversalClient
}

var _ tokens.SessionStore = (*Store)(nil)

// NewStore returns a store reading through client (standalone, sentinel or
// cluster). The client is the caller's to close.
func NewStore(client goredis.UniversalClient) *Store {
	return &Store{client: client}
}

// SessionFields returns the hash stored under key; empty when there is none.
func (s *Store) SessionFields(ctx context.Context, key string) (map[string]string, error) {
	m, err := s.client.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redis HGETALL: %w", err)
	}
	return m, nil
}
