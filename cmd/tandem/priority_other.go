//go:build !linux

package main

// raisePriority is a no-op off Linux.
func raisePriority() error { return nil }
