package testredis

import (
	"context"
	"testing"
)

func TestStartRestartStop(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	// A restarted server is empty (no persistence) and on the same port.
	var n int64
	var err error
	for range 3 { // the first call may meet the connection the restart closed
		if n, err = c.Exists(ctx, "k").Result(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n != 0 {
		t.Errorf("key survived a restart: persistence is not off")
	}
	s.Stop()
	if err := ping(s.Addr(), nil); err == nil {
		t.Error("server still answers after Stop")
	}
	s.Stop() // idempotent
}
