package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/gcfloor"
	"github.com/ratelimit-ext/ratelimit-ext/internal/grpcopts"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/nooprls"
	"github.com/redis/go-redis/v9"
)

// serveCeiling serves nooprls with the service's gRPC settings and its garbage
// collector floor (internal/gcfloor, the default of --gc-floor-mib). args are the
// address, then optionally a mode and a Redis address: every request then first waits
// for a script call that does nothing (EVALSHA of "return 1") sent with go-redis and
// the service's benchmark timeouts: "each" sends one per request, like the engine
// without batching; "batched" lets the requests that arrive together share one, the way
// the engine batches (below).
func serveCeiling(args []string) {
	if len(args) != 1 && len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: benchsuite -serve-ceiling ADDR [each|batched REDIS-ADDR]")
		os.Exit(2)
	}
	addr, modeAndRedis := args[0], args[1:]
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
	gcfloor.Start(gcfloor.DefaultBytes)
	var s nooprls.Server
	if len(modeAndRedis) == 2 {
		rdb := redis.NewClient(&redis.Options{Addr: modeAndRedis[1], DisableIdentity: true,
			ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
		nothing := redis.NewScript("return 1")
		call := func(ctx context.Context) error { return nothing.Run(ctx, rdb, nil).Err() }
		switch modeAndRedis[0] {
		case "each":
			s.Before = call
		case "batched":
			s.Before = (&sharedCall{free: limiter.DefaultRedisBatchLanes, call: call}).wait
		default:
			fmt.Fprintln(os.Stderr, "ceiling: unknown mode", modeAndRedis[0])
			os.Exit(2)
		}
	}
	gs := nooprls.Serve(lis, s, grpcopts.Server()...)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	gs.Stop()
}

// sharedCall lets concurrent requests share calls with the engine's batching shape
// (internal/limiter/redis_batch.go, its defaults): at most free calls in flight; a
// request that finds a free lane sends at once; the others queue, and when a call
// comes back its sender hands the lane to the oldest waiter, which takes the queue (up
// to maxShared requests, itself first) when it runs and sends it as one call. Only the
// call's content differs: it does nothing, so the Redis engine's row beside it shows
// what deciding costs on top of waiting.
type sharedCall struct {
	mu    sync.Mutex
	free  int
	queue []waiter
	call  func(context.Context) error
}

// A waiter receives false when its request is answered, or true when it is handed a
// lane and sends the next call.
type waiter chan bool

const maxShared = limiter.DefaultRedisBatchMax

func (s *sharedCall) wait(ctx context.Context) error {
	s.mu.Lock()
	if s.free > 0 {
		s.free--
		s.mu.Unlock()
		return s.send(ctx, nil)
	}
	me := make(waiter, 1)
	s.queue = append(s.queue, me)
	s.mu.Unlock()
	if !<-me {
		return nil
	}
	s.mu.Lock()
	n := min(len(s.queue), maxShared-1)
	others := append([]waiter(nil), s.queue[:n]...)
	s.queue = append(s.queue[:0], s.queue[n:]...)
	s.mu.Unlock()
	return s.send(ctx, others)
}

// send makes one call for this request and others, answers them, then hands the lane
// to the oldest waiter, or frees it. The others are answered OK whatever the call
// returns (a failed call is the sender's error only): this is a ceiling.
func (s *sharedCall) send(ctx context.Context, others []waiter) error {
	err := s.call(ctx)
	for _, o := range others {
		o <- false
	}
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.free++
		s.mu.Unlock()
		return err
	}
	next := s.queue[0]
	s.queue = append(s.queue[:0], s.queue[1:]...)
	s.mu.Unlock()
	next <- true
	return err
}
