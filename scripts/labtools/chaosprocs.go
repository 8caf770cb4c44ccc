package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The processes of the chaos lab: every child the driver starts, in the
// lab's namespaces, and how it ends them.

type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// spawn runs argv inside box's namespace; stdout goes to out (or the log
// file), stderr to the log file. The PID is recorded for chaos.sh's trap.
func (d *driver) spawn(name, box string, stdout io.Writer, argv ...string) (*child, error) {
	logPath := filepath.Join(d.o.out, name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", d.ns(box)}, argv...)...)
	cmd.Stderr = lf
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	fmt.Fprintf(d.pidsFile, "%d %s\n", cmd.Process.Pid, name)
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(c.done) }()
	d.mu.Lock()
	d.children[name] = c
	d.mu.Unlock()
	return c, nil
}

// kill sends sig to a child we started and waits up to wait for it.
func (d *driver) kill(name string, sig syscall.Signal, wait time.Duration) bool {
	d.mu.Lock()
	c := d.children[name]
	d.mu.Unlock()
	if c == nil {
		return true
	}
	select {
	case <-c.done:
		return true
	default:
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// stopAll ends every child we started: TERM, then KILL.
func (d *driver) stopAll() {
	d.mu.Lock()
	names := make([]string, 0, len(d.children))
	for n := range d.children {
		names = append(names, n)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !d.kill(n, syscall.SIGTERM, 3*time.Second) {
				d.kill(n, syscall.SIGKILL, 2*time.Second)
			}
		}()
	}
	wg.Wait()
}

func (d *driver) labsh(args ...string) error {
	out, err := exec.Command(d.o.lab, append([]string{"-p", d.o.prefix}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab.sh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ---- processes of the lab

func (d *driver) startBackend(be string) error {
	_, err := d.spawn("backend-"+be, be, nil, d.self, "backend", "-name", be, "-http", "0.0.0.0:80", "-udp", "0.0.0.0:"+udpPort)
	return err
}

func (d *driver) startTandem(box string) error {
	_, err := d.spawn("tandem-"+box, box, nil, d.o.tandem, "run", "--config", filepath.Join(d.o.out, box+".yaml"))
	return err
}

// startVipwatch runs a watcher in box's namespace and follows its lines.
func (d *driver) startVipwatch(box string) error {
	pr, pw := io.Pipe()
	raw, err := os.Create(filepath.Join(d.o.out, "vip-"+box+".jsonl"))
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() {
		defer raw.Close()
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			raw.Write(append(sc.Bytes(), '\n'))
			var e AddrEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			if e.Op == "ready" {
				once.Do(func() { close(ready) })
				continue
			}
			d.mu.Lock()
			d.vipEvs = append(d.vipEvs, e)
			if d.holders[e.Addr] == nil {
				d.holders[e.Addr] = map[string]bool{}
			}
			d.holders[e.Addr][e.Box] = e.Op == "add"
			d.mu.Unlock()
		}
	}()
	c, err := d.spawn("vipwatch-"+box, box, pw, d.self, "vipwatch", "-iface", "eth0", "-box", box, "-duration", "1h")
	if err != nil {
		return err
	}
	go func() { <-c.done; pw.Close() }()
	select {
	case <-ready:
		return nil
	case <-c.done:
		return fmt.Errorf("vipwatch in %s exited (see %s/vipwatch-%s.log)", box, d.o.out, box)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("vipwatch in %s not ready after 5s", box)
	}
}
