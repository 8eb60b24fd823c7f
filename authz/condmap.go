package authz

import (
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// strMap is the CEL value of a request map (headers, query, context
// extensions) without allocating: it lives in the activation, answers
// lookups, membership and size itself, and builds cel-go's own map value
// (types.NewStringStringMap, two allocations) only for what it does not
// answer (iteration, equality, conversion). condition_test.go compares
// it with that value over a table of expressions.
type strMap struct {
	m    map[string]string
	full traits.Mapper
}

var _ traits.Mapper = (*strMap)(nil)

func (s *strMap) slow() traits.Mapper {
	if s.full == nil {
		s.full = types.NewStringStringMap(types.DefaultTypeAdapter, s.m)
	}
	return s.full
}

// Find implements traits.Mapper.
func (s *strMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return s.slow().Find(key)
	}
	v, ok := s.m[string(k)]
	if !ok {
		return nil, false
	}
	return types.String(v), true
}

// Get implements traits.Indexer.
func (s *strMap) Get(key ref.Val) ref.Val {
	if v, ok := s.Find(key); ok {
		return v
	}
	return s.slow().Get(key) // its error
}

// Contains implements traits.Container.
func (s *strMap) Contains(key ref.Val) ref.Val {
	_, ok := s.Find(key)
	return types.Bool(ok)
}

// Size implements traits.Sizer.
func (s *strMap) Size() ref.Val { return types.Int(len(s.m)) }

// IsZeroValue reports an empty map.
func (s *strMap) IsZeroValue() bool { return len(s.m) == 0 }

// Iterator implements traits.Iterable.
func (s *strMap) Iterator() traits.Iterator { return s.slow().Iterator() }

// ConvertToNative implements ref.Val.
func (s *strMap) ConvertToNative(t reflect.Type) (any, error) { return s.slow().ConvertToNative(t) }

// ConvertToType implements ref.Val.
func (s *strMap) ConvertToType(t ref.Type) ref.Val { return s.slow().ConvertToType(t) }

// Equal implements ref.Val.
func (s *strMap) Equal(other ref.Val) ref.Val { return s.slow().Equal(other) }

// Type implements ref.Val.
func (s *strMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (s *strMap) Value() any { return s.m }

// claimMap is strMap for the claims (JSON values, adapted on lookup).
type claimMap struct {
	m    map[string]any
	full traits.Mapper
}

var _ traits.Mapper = (*claimMap)(nil)

func (c *claimMap) slow() traits.Mapper {
	if c.full == nil {
		c.full = types.NewStringInterfaceMap(types.DefaultTypeAdapter, c.m)
	}
	return c.full
}

// Find implements traits.Mapper.
func (c *claimMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return c.slow().Find(key)
	}
	v, ok := c.m[string(k)]
	if !ok {
		return nil, false
	}
	return types.DefaultTypeAdapter.NativeToValue(v), true
}

// Get implements traits.Indexer.
func (c *claimMap) Get(key ref.Val) ref.Val {
	if v, ok := c.Find(key); ok {
		return v
	}
	return c.slow().Get(key)
}

// Contains implements traits.Container.
func (c *claimMap) Contains(key ref.Val) ref.Val {
	_, ok := c.Find(key)
	return types.Bool(ok)
}

// Size implements traits.Sizer.
func (c *claimMap) Size() ref.Val { return types.Int(len(c.m)) }

// IsZeroValue reports an empty map.
func (c *claimMap) IsZeroValue() bool { return len(c.m) == 0 }

// Iterator implements traits.Iterable.
func (c *claimMap) Iterator() traits.Iterator { return c.slow().Iterator() }

// ConvertToNative implements ref.Val.
func (c *claimMap) ConvertToNative(t reflect.Type) (any, error) { return c.slow().ConvertToNative(t) }

// ConvertToType implements ref.Val.
func (c *claimMap) ConvertToType(t ref.Type) ref.Val { return c.slow().ConvertToType(t) }

// Equal implements ref.Val.
func (c *claimMap) Equal(other ref.Val) ref.Val { return c.slow().Equal(other) }

// Type implements ref.Val.
func (c *claimMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (c *claimMap) Value() any { return c.m }
