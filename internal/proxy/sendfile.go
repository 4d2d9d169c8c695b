package proxy

import (
	"io"
	"net"
	"syscall"

	"github.com/gofiber/fiber/v2"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// sendFileMin is the smallest body sent straight from its file (sentBody):
// below it, copying the body into the buffer that holds the headers costs
// less than writing the headers on their own first.
const sendFileMin = 64 << 10

// sentBody is the body stream of an answer whose body goes from its file
// (a staging file or the cache file) straight to the client's TCP socket
// (cache.Reader.SendTo).
// fasthttp flushes the headers before it asks for the body
// (ImmediateHeaderFlush), so its buffered writer is empty and left aside.
type sentBody struct {
	*cache.Reader
	conn syscall.RawConn
}

// WriteTo sends the body on the client's connection instead of w.
func (b sentBody) WriteTo(io.Writer) (int64, error) { return b.SendTo(b.conn) }

// setBodyStream makes r, limited to n bytes, the body of c's answer: sent
// straight from its file (sendfile for a staged body, write from the
// cache file's mapping for a stored one: see cache.Reader.SendTo) when it
// is in a file, large enough and c's client is on a plain TCP connection,
// else copied through fasthttp's buffered writer.
func setBodyStream(c *fiber.Ctx, r *cache.Reader, n int64) {
	resp := c.Response()
	if conn := sendFileConn(c, r, n); conn != nil {
		resp.ImmediateHeaderFlush = true
		resp.SetBodyStream(sentBody{Reader: r, conn: conn}, int(n))
		return
	}
	resp.SetBodyStream(r, int(n))
}

// sendFileConn returns the socket of c's client when r's body, n bytes of
// it, is to be sent to it straight from its file, nil otherwise (held in
// memory, small body, no SendTo here, TLS or another wrapped connection).
func sendFileConn(c *fiber.Ctx, r *cache.Reader, n int64) syscall.RawConn {
	if !cache.SendFiles || r.InMemory() || n < sendFileMin {
		return nil
	}
	tc, ok := c.Context().Conn().(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
