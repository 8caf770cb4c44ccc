//go:build !linux

package sched

import "errors"

func setNormal() error { return errors.ErrUnsupported }

func policy() (int, int, error) { return 0, 0, errors.ErrUnsupported }
