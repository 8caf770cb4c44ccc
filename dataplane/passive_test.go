package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"testing"
)

// TestConnectFailure names each way a connect fails the way passive
// health counts it.
func TestConnectFailure(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial tcp 198.18.0.21:80: %w", syscall.ECONNREFUSED), FailConnectRefused},
		{fmt.Errorf("dial tcp 198.18.0.21:80: %w", syscall.ETIMEDOUT), FailConnectTimeout},
		{os.ErrDeadlineExceeded, FailConnectTimeout},
		{context.DeadlineExceeded, FailConnectTimeout},
		{fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), FailConnect},
		{errors.New("write PROXY header: broken pipe"), FailConnect},
	} {
		if got := connectFailure(tc.err); got != tc.want {
			t.Errorf("connectFailure(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestTrafficOKOnlyAfterFailure: a success is reported only when it
// breaks a run of failures, once; without SetPassive nothing is.
func TestTrafficOKOnlyAfterFailure(t *testing.T) {
	s := NewServer(0, "s", netip.MustParseAddrPort("127.0.0.1:80"), 1)
	p := NewPool([]*Server{s}, roundRobinForTest())
	s.trafficFailed(FailConnect) // no hook yet: nothing
	var got []string
	p.SetPassive(func(server string, ok bool, what string) { got = append(got, fmt.Sprint(server, ok, what)) })
	s.trafficOK()
	s.trafficFailed(FailConnectRefused)
	s.trafficOK()
	s.trafficOK()
	p.SetPassive(nil)
	s.trafficFailed(FailConnect)
	want := []string{"sfalse" + FailConnectRefused, "strue"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reports %q, want %q", got, want)
	}
}

func roundRobinForTest() Balancer {
	b, err := NewBalancer(RoundRobin)
	if err != nil {
		panic(err)
	}
	return b
}
