package revocation

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Memory is a Source held in process memory: a log and the records it
// implies. It stands in for the store in tests of the packages that use a
// List, and is safe for concurrent use. The zero value is not usable:
// call NewMemory.
type Memory struct {
	mu      sync.Mutex
	records []Record // every record written (the store's sets)
	log     []Record
	base    int // log position of log[0] (earlier entries were trimmed)
	maxLen  int
	wake    chan struct{}
	failing error
}

var _ Source = (*Memory)(nil)

// NewMemory returns an empty store whose log keeps the last maxLen
// entries (0: all).
func NewMemory(maxLen int) *Memory { return &Memory{maxLen: maxLen, wake: make(chan struct{})} }

// Revoke writes r.
func (m *Memory) Revoke(r Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, r)
	m.log = append(m.log, r)
	if m.maxLen > 0 && len(m.log) > m.maxLen {
		n := len(m.log) - m.maxLen
		m.log = append([]Record(nil), m.log[n:]...)
		m.base += n
	}
	close(m.wake)
	m.wake = make(chan struct{})
	return nil
}

// Fail makes every call return err until Fail(nil).
func (m *Memory) Fail(err error) {
	m.mu.Lock()
	m.failing = err
	m.mu.Unlock()
}

// Snapshot implements Source: every record written, trimmed from the log
// or not (as the store's sets hold them).
func (m *Memory) Snapshot(_ context.Context, _ time.Time, add func(Record)) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing != nil {
		return "", m.failing
	}
	for _, r := range m.records {
		add(r)
	}
	return pos(m.base + len(m.log)), nil
}

func pos(n int) string { return strconv.Itoa(n) + "-0" }

// Read implements Source.
func (m *Memory) Read(ctx context.Context, cursor string, block time.Duration) ([]Record, string, error) {
	ms, _ := splitID(cursor)
	at := int(ms)
	t := time.NewTimer(block)
	defer t.Stop()
	for {
		m.mu.Lock()
		if m.failing != nil {
			err := m.failing
			m.mu.Unlock()
			return nil, cursor, err
		}
		if at < m.base {
			m.mu.Unlock()
			return nil, cursor, ErrGap
		}
		if end := m.base + len(m.log); at < end {
			out := append([]Record(nil), m.log[at-m.base:]...)
			m.mu.Unlock()
			return out, pos(end), nil
		}
		wake := m.wake
		m.mu.Unlock()
		select {
		case <-wake:
		case <-t.C:
			return nil, cursor, nil
		case <-ctx.Done():
			return nil, cursor, ctx.Err()
		}
	}
}

// Lookup implements Source.
func (m *Memory) Lookup(_ context.Context, q *Query) (Found, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing != nil {
		return Found{}, m.failing
	}
	var f Found
	for _, r := range m.records {
		switch {
		case r.Kind == KindSubject:
			if !q.NoEpoch && r.ID == q.Subject && (r.App == "" || r.App == q.App) {
				f.Epoch = max(f.Epoch, r.At)
			}
		case int(r.Kind) < numCredKinds && q.IDs[r.Kind] == r.ID:
			return Found{Cred: true, Kind: r.Kind}, nil
		}
	}
	return f, nil
}
