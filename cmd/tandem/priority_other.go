//go:build !linux

package main

// raisePriority is a no-op off Linux.
func raisePriority(int) (string, error) { return "normal", nil }
