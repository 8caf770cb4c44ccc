package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	for _, msg := range []string{Ready, Watchdog, Stopping} {
		if ok, err := Notify(msg); !ok || err != nil {
			t.Fatalf("Notify(%s) = %v, %v", msg, ok, err)
		}
		buf := make([]byte, 64)
		l.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := l.ReadFromUnix(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, msg)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := Notify(Ready); ok || err != nil {
		t.Fatalf("without a socket: %v, %v", ok, err)
	}
}

func TestNotifyAbstract(t *testing.T) {
	name := "tandem-sdnotify-test-" + time.Now().Format("150405.000000000")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ok, err := notify("@"+name, Watchdog); !ok || err != nil {
		t.Fatalf("abstract: %v, %v", ok, err)
	}
	buf := make([]byte, 64)
	l.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := l.ReadFromUnix(buf); err != nil || string(buf[:n]) != Watchdog {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tt := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"10000000", "", 10 * time.Second},
		{"10000000", "42", 10 * time.Second},
		{"10000000", "43", 0},
		{"x", "", 0},
		{"-5", "", 0},
	} {
		if got := watchdogInterval(tt.usec, tt.pid, 42); got != tt.want {
			t.Errorf("watchdogInterval(%q, %q) = %v, want %v", tt.usec, tt.pid, got, tt.want)
		}
	}
}
