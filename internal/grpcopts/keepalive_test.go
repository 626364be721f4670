package grpcopts

import (
	"math"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ratelimit-ext/ratelimit-ext/internal/nooprls"
)

// A client that keeps an idle connection alive with HTTP/2 PINGs every
// KeepaliveMinTime, as Envoy does with a cluster's connection_keepalive (it pings
// whether or not a call is open) and grpc-go clients with keepalive.ClientParameters,
// keeps its connection: grpc-go's default enforcement (at most one ping per 5 minutes,
// none on a connection without calls) answered the third such ping with GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings" and closed the connection.
func TestKeepalivePingsAreTolerated(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := nooprls.Serve(lis, nooprls.Server{}, Server()...)
	t.Cleanup(gs.Stop)
	conn, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Three pings within the enforced interval are what grpc-go answers with GOAWAY;
	// after the last, wait a little for one.
	const pings = 5
	for i := range pings {
		if i > 0 {
			time.Sleep(KeepaliveMinTime + 100*time.Millisecond)
		}
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		for acked := false; !acked; {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("ping %d: no answer: %v", i, err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.GoAwayFrame:
				t.Fatalf("ping %d, %v after the last: GOAWAY %v %q", i, KeepaliveMinTime, f.ErrCode, f.DebugData())
			case *http2.PingFrame:
				acked = f.IsAck() && f.Data == [8]byte{byte(i)}
			}
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return // nothing more: the connection is still open
		}
		if f, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("after %d pings %v apart: GOAWAY %v %q", pings, KeepaliveMinTime, f.ErrCode, f.DebugData())
		}
	}
}

// The server's keepalive parameters: the ping interval given, and 0 meaning no pings
// at all (grpc-go reads 0 as its 2 h default, which would still ping); the connection
// age travels in the same option, as grpc-go keeps only the last KeepaliveParams.
func TestServerParameters(t *testing.T) {
	for _, tc := range []struct {
		pingIdle, maxAge, grace time.Duration
		wantTime                time.Duration
	}{
		{time.Minute, 24 * time.Hour, time.Hour, time.Minute},
		{time.Second, 0, 0, time.Second},
		{0, 24 * time.Hour, time.Hour, math.MaxInt64},
	} {
		p := serverParameters(tc.pingIdle, tc.maxAge, tc.grace)
		if p.Time != tc.wantTime || p.Timeout != KeepaliveTimeout || p.MaxConnectionAge != tc.maxAge || p.MaxConnectionAgeGrace != tc.grace {
			t.Errorf("serverParameters(%v, %v, %v) = %+v, want Time %v, Timeout %v and the age as given",
				tc.pingIdle, tc.maxAge, tc.grace, p, tc.wantTime, KeepaliveTimeout)
		}
	}
}
