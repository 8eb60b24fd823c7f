package authz

import (
	"strings"
	"testing"
)

// TestConditionJoinCostIsBounded: cel-go's estimate of join counts the
// list's elements but not their sizes, so a join of computed strings was
// admitted under the cost limit and then built a string of gigabytes for
// one request (lists.range(50000).map(x, request.path).join() with an
// 8 KiB path: the runtime limit only notices once it is built). Only a
// join whose strings are written out in the condition is admitted.
func TestConditionJoinCostIsBounded(t *testing.T) {
	refused := []string{
		`lists.range(50000).map(x, request.path).join("") != ""`,
		`lists.range(20000).map(x, request.path).join("").size() > 0`,
		`lists.range(1000).map(x, request.headers["a"]).join(",") == ""`,
		`request.path.split("/").join(request.path) != ""`,
		`[request.path, request.path].join(request.path) != ""`,
		`request.headers.map(k, request.headers[k]).join() != ""`,
	}
	for _, src := range refused {
		if _, err := compileConditions([]string{src}, false); err == nil || !strings.Contains(err.Error(), "join") {
			t.Errorf("compile(%q) = %v, want refused for its join", src, err)
		}
	}
	admitted := []string{
		`["a", "b"].join("/") == request.path`,
		`request.path.startsWith(["", "api"].join("/"))`,
	}
	for _, src := range admitted {
		cs, err := compileConditions([]string{src}, false)
		if err != nil {
			t.Errorf("compile(%q): %v", src, err)
			continue
		}
		la := lazyActivation{}
		if res, err := cs[0].eval(la.get(&Request{Method: "GET", Host: "h", Path: "/api"})); res == condError {
			t.Errorf("eval(%q): %v", src, err)
		}
	}
}
