package healthcheck

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// radiusServer is a tiny RADIUS server for the tests, written from the
// RFCs rather than from the checker.
type radiusServer struct {
	t      *testing.T
	secret string
	code   byte // the reply's code
	// answerBadMA replies even to a request whose Message-Authenticator
	// does not verify, signing with its own secret; a real server drops it.
	answerBadMA bool
}

func (s *radiusServer) reply(req []byte) []byte {
	if len(req) < 20 || req[0] != radiusStatusServer || int(binary.BigEndian.Uint16(req[2:4])) != len(req) {
		s.t.Errorf("test server: not a Status-Server request: % x", req)
		return nil
	}
	// RFC 3579 3.2: HMAC-MD5 over the request with the attribute zeroed.
	var got []byte
	work := append([]byte(nil), req...)
	for i := 20; i+2 <= len(work) && work[i+1] >= 2; i += int(work[i+1]) {
		if work[i] == 80 && work[i+1] == 18 {
			got = append([]byte(nil), work[i+2:i+18]...)
			clear(work[i+2 : i+18])
		}
	}
	if got == nil {
		s.t.Errorf("test server: Status-Server without a Message-Authenticator (RFC 5997 requires one)")
		return nil
	}
	mac := hmac.New(md5.New, []byte(s.secret))
	mac.Write(work)
	if !hmac.Equal(mac.Sum(nil), got) && !s.answerBadMA {
		return nil // silently discarded, as RFC 3579 says
	}

	// Reply: code, same id, a Message-Authenticator computed with the
	// request authenticator in place, then the Response Authenticator.
	resp := make([]byte, 20, 38)
	resp[0], resp[1] = s.code, req[1]
	copy(resp[4:20], req[4:20])
	resp = append(resp, 80, 18)
	resp = append(resp, make([]byte, 16)...)
	binary.BigEndian.PutUint16(resp[2:4], uint16(len(resp)))
	mac = hmac.New(md5.New, []byte(s.secret))
	mac.Write(resp)
	copy(resp[22:38], mac.Sum(nil))
	h := md5.New()
	h.Write(resp)
	h.Write([]byte(s.secret))
	copy(resp[4:20], h.Sum(nil))
	return resp
}

func TestRADIUS(t *testing.T) {
	tests := []struct {
		name   string
		server radiusServer
		secret string
		ok     bool
		detail string
	}{
		{"Access-Accept", radiusServer{secret: "s3cret", code: radiusAccessAccept}, "s3cret", true, "RADIUS Access-Accept in"},
		{"Accounting-Response", radiusServer{secret: "s3cret", code: radiusAccountingResp}, "s3cret", true, "RADIUS Accounting-Response in"},
		{"Access-Reject", radiusServer{secret: "s3cret", code: radiusAccessReject}, "s3cret", false, "RADIUS Access-Reject"},
		{"wrong secret is dropped", radiusServer{secret: "s3cret", code: radiusAccessAccept}, "wrong", false, "no reply: timeout after"},
		{"reply with another secret", radiusServer{secret: "s3cret", code: radiusAccessAccept, answerBadMA: true}, "wrong", false, "response authenticator did not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.server.t = t
			pc := serveUDP(t, tt.server.reply)
			c := mustNew(t, config.HealthCheck{Type: "radius", Secret: tt.secret})
			wantResult(t, check(t, c, addrOf(t, pc.LocalAddr()), 300*time.Millisecond), tt.ok, tt.detail)
		})
	}
}

// TestRADIUSMessageAuthenticatorChecked forges a reply whose Response
// Authenticator is right but whose Message-Authenticator is not.
func TestRADIUSMessageAuthenticatorChecked(t *testing.T) {
	s := radiusServer{t: t, secret: "s3cret", code: radiusAccessAccept}
	pc := serveUDP(t, func(req []byte) []byte {
		resp := s.reply(req)
		resp[30] ^= 1 // inside the Message-Authenticator value
		copy(resp[4:20], req[4:20])
		h := md5.New()
		h.Write(resp)
		h.Write([]byte(s.secret))
		copy(resp[4:20], h.Sum(nil))
		return resp
	})
	c := mustNew(t, config.HealthCheck{Type: "radius", Secret: "s3cret"})
	wantResult(t, check(t, c, addrOf(t, pc.LocalAddr()), 300*time.Millisecond), false, "Message-Authenticator did not verify")
}
