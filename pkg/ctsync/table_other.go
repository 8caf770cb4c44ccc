//go:build !linux

package ctsync

import (
	"context"
	"log/slog"
)

// Table is the kernel's conntrack table; it needs Linux ctnetlink and
// every function returns an error wrapping ErrUnsupported here.
type Table struct {
	EventOptions EventOptions
}

// Open returns ErrUnsupported on this platform.
func Open(*slog.Logger) (*Table, error) { return nil, ErrUnsupported }

// OpenNetns returns ErrUnsupported on this platform.
func OpenNetns(int, *slog.Logger) (*Table, error) { return nil, ErrUnsupported }

// Probe returns ErrUnsupported on this platform.
func Probe() error { return ErrUnsupported }

func (t *Table) Close() error                                   { return nil }
func (t *Table) Stats() Stats                                   { return Stats{} }
func (t *Table) Probe() error                                   { return ErrUnsupported }
func (t *Table) EventsMode() (int, error)                       { return 0, ErrUnsupported }
func (t *Table) Write(Flow) error                               { return ErrUnsupported }
func (t *Table) Delete(Flow) error                              { return ErrUnsupported }
func (t *Table) Dump(uint32, uint32, func(Flow) bool) error     { return ErrUnsupported }
func (t *Table) Count(uint32, uint32) (map[CountKey]int, error) { return nil, ErrUnsupported }
func (t *Table) DeleteWhere(uint32, uint32, func(Flow) bool) (int, error) {
	return 0, ErrUnsupported
}
func (t *Table) Events(context.Context, uint32, uint32, chan<- Event) error {
	return ErrUnsupported
}
