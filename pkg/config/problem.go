package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config, located as precisely as the
// file allows: the file, the line of the key (or of its nearest parent
// present in the file), and the key path such as
// "clusters[0].servers[1].address".
type Problem struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

// String renders the problem the way `tandem validate` prints it:
// FILE:LINE: key.path: message. The line is left out when unknown, the
// file when empty, the key when the problem is about the file as a whole.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Errors is every problem found in one config. It is an error so Load and
// Validate can return it as one; callers that want the list use
// errors.As(err, &config.Errors{}).
type Errors []Problem

// Error prints one problem per line, sorted by line.
func (e Errors) Error() string {
	sorted := slices.Clone(e)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, p := range sorted {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders problems by line, keeping the order they were found in for
// problems on the same line (and those with no line, which come first).
func (e Errors) sort() {
	slices.SortStableFunc(e, func(a, b Problem) int { return a.Line - b.Line })
}

// err returns e as an error, or a nil error when there is no problem (never
// a typed nil).
func (e Errors) err() error {
	if len(e) == 0 {
		return nil
	}
	e.sort()
	return e
}

// problem builds a Problem for key, located with the line map of c. A key
// set from the environment is reported with its variable and no line,
// since the line in the file is not where the value came from.
func (c *Config) problem(key, format string, args ...any) Problem {
	p := Problem{File: c.File, Key: key, Msg: fmt.Sprintf(format, args...)}
	if env, ok := c.env[key]; ok {
		p.Msg += " (from $" + env + ")"
		return p
	}
	p.Line = c.lineOf(key)
	return p
}

// lineOf returns the line of key, or of its nearest parent present in the
// file, or 0.
func (c *Config) lineOf(key string) int {
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := c.lines[k]; ok {
			return l
		}
	}
	return 0
}

// parentKey strips the last element of a key path:
// "a.b[2].c" → "a.b[2]" → "a.b" → "a" → "".
func parentKey(k string) string {
	if strings.HasSuffix(k, "]") {
		if i := strings.LastIndexByte(k, '['); i >= 0 {
			return k[:i]
		}
	}
	if i := strings.LastIndexByte(k, '.'); i >= 0 {
		return k[:i]
	}
	return ""
}
