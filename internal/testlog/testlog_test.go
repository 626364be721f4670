package testlog

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestBuffer(t *testing.T) {
	var l Buffer
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				fmt.Fprintf(&l, "msg=hello g=%d i=%d\n", g, i)
			}
		})
	}
	wg.Go(func() { fmt.Fprintln(&l, "msg=late part=a part=b") })
	l.WaitLine(t, 5*time.Second, "late", "part=a", "part=b")
	wg.Wait()
	if !l.HasLine("g=3", "i=49") {
		t.Error("a logged line is not found")
	}
	if l.HasLine("g=1", "part=a") {
		t.Error("parts from two different lines matched as one")
	}
}
