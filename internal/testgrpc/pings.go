package testgrpc

import (
	"io"
	"net"

	"golang.org/x/net/http2"
)

// WatchPings returns conn with everything read from it also parsed as HTTP/2 frames:
// onPing is called, from another goroutine, with the data of every PING frame read
// that is not an acknowledgement. fromClient says conn is a server's end, whose reads
// begin with the client preface; otherwise it is a client's end (e.g. wrapped by a
// grpc.WithContextDialer), reading the server's frames. The gRPC code above conn sees
// the same bytes as without it.
func WatchPings(conn net.Conn, fromClient bool, onPing func(data [8]byte)) net.Conn {
	r, w := io.Pipe()
	go parsePings(r, fromClient, onPing)
	return &pingConn{Conn: conn, copy: w}
}

// pingConn copies what it reads into a pipe that parsePings reads.
type pingConn struct {
	net.Conn
	copy *io.PipeWriter
}

func (c *pingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		// parsePings reads the pipe until it closes, so this returns once it has the bytes.
		_, _ = c.copy.Write(p[:n])
	}
	if err != nil {
		_ = c.copy.CloseWithError(err)
	}
	return n, err
}

func (c *pingConn) Close() error {
	_ = c.copy.Close()
	return c.Conn.Close()
}

// parsePings reads frames from r until it fails, then drains r so that the
// connection's reads never block on the pipe.
func parsePings(r *io.PipeReader, fromClient bool, onPing func([8]byte)) {
	defer func() { _, _ = io.Copy(io.Discard, r) }()
	if fromClient {
		if _, err := io.ReadFull(r, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
	}
	fr := http2.NewFramer(nil, r)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			onPing(p.Data)
		}
	}
}
