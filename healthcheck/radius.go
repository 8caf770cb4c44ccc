package healthcheck

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// RADIUS codes and attributes the check uses (RFC 2865, 2866, 5997, 3579).
const (
	radiusAccessAccept      = 2
	radiusAccessReject      = 3
	radiusAccountingResp    = 5
	radiusStatusServer      = 12
	radiusAttrNASIdentifier = 32
	radiusAttrMessageAuth   = 80
	radiusHeaderLen         = 20
)

// radiusChecker sends a Status-Server request (RFC 5997) signed with a
// Message-Authenticator (HMAC-MD5 with the shared secret, RFC 3579), and
// passes on an Access-Accept (authentication ports) or an
// Accounting-Response (accounting ports) whose Response Authenticator,
// and Message-Authenticator if it has one, verify with the secret. So a
// pass also proves the server and the balancer agree on the secret.
type radiusChecker struct {
	secret []byte
}

// Check implements Checker.
func (c *radiusChecker) Check(ctx context.Context, addr netip.AddrPort) Result {
	start := time.Now()
	req, err := c.request()
	if err != nil {
		return fail(start, "build request: %v", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return failErr(ctx, start, err)
	}
	defer conn.Close()
	defer withDeadline(ctx, conn)()
	if _, err := conn.Write(req); err != nil {
		return failErr(ctx, start, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fail(start, "no reply: %s", describe(ctx, start, err))
		}
		resp := buf[:n]
		if n < radiusHeaderLen || resp[1] != req[1] {
			continue // not a reply to this request
		}
		if err := c.verify(req, resp); err != nil {
			return fail(start, "RADIUS %v", err)
		}
		switch resp[0] {
		case radiusAccessAccept:
			return pass(start, "RADIUS Access-Accept in %s", ms(time.Since(start)))
		case radiusAccountingResp:
			return pass(start, "RADIUS Accounting-Response in %s", ms(time.Since(start)))
		case radiusAccessReject:
			return fail(start, "RADIUS Access-Reject")
		default:
			return fail(start, "RADIUS unexpected code %d", resp[0])
		}
	}
}

// request builds a Status-Server packet with a random identifier and
// Request Authenticator, a NAS-Identifier and a Message-Authenticator.
func (c *radiusChecker) request() ([]byte, error) {
	nasID := []byte("tandem")
	p := make([]byte, radiusHeaderLen, radiusHeaderLen+18+2+len(nasID))
	if _, err := rand.Read(p[1:2]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(p[4:20]); err != nil {
		return nil, err
	}
	p[0] = radiusStatusServer
	p = append(p, radiusAttrMessageAuth, 18)
	maOff := len(p)
	p = append(p, make([]byte, 16)...)
	p = append(p, radiusAttrNASIdentifier, byte(2+len(nasID)))
	p = append(p, nasID...)
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	mac := hmac.New(md5.New, c.secret)
	mac.Write(p) // the Message-Authenticator is still zero
	copy(p[maOff:], mac.Sum(nil))
	return p, nil
}

// verify checks a reply's length, its Response Authenticator
// (MD5(code|id|length|request authenticator|attributes|secret)) and, if
// present, its Message-Authenticator (HMAC-MD5 over the reply with the
// request authenticator in place and the attribute zeroed).
func (c *radiusChecker) verify(req, resp []byte) error {
	l := int(binary.BigEndian.Uint16(resp[2:4]))
	if l < radiusHeaderLen || l > len(resp) {
		return fmt.Errorf("reply length %d, got %d bytes", l, len(resp))
	}
	resp = resp[:l]
	h := md5.New()
	h.Write(resp[:4])
	h.Write(req[4:20])
	h.Write(resp[20:])
	h.Write(c.secret)
	if !hmac.Equal(h.Sum(nil), resp[4:20]) {
		return errors.New("response authenticator did not verify (wrong secret?)")
	}
	maOff, err := findAttr(resp, radiusAttrMessageAuth)
	if err != nil || maOff < 0 {
		return err
	}
	if resp[maOff-1] != 18 {
		return errors.New("bad Message-Authenticator length")
	}
	work := append([]byte(nil), resp...)
	copy(work[4:20], req[4:20])
	clear(work[maOff : maOff+16])
	mac := hmac.New(md5.New, c.secret)
	mac.Write(work)
	if !hmac.Equal(mac.Sum(nil), resp[maOff:maOff+16]) {
		return errors.New("Message-Authenticator did not verify (wrong secret?)")
	}
	return nil
}

// findAttr returns the offset of the value of the first attribute of type
// t, or -1.
func findAttr(p []byte, t byte) (int, error) {
	for i := radiusHeaderLen; i < len(p); {
		if i+2 > len(p) || p[i+1] < 2 || i+int(p[i+1]) > len(p) {
			return -1, errors.New("malformed attributes")
		}
		if p[i] == t {
			return i + 2, nil
		}
		i += int(p[i+1])
	}
	return -1, nil
}
