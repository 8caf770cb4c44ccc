//go:build !linux

package main

// removeNATRules: there are no nat rules off Linux.
func removeNATRules() (bool, error) { return false, nil }
