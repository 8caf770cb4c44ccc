package config

import (
	"reflect"
	"strings"
)

// suggest returns the known key under the struct at path ("failover.garp",
// "clusters[0].servers[1]", "" for the top) closest to the unknown key k,
// or "" when none is close: a two-letter typo or a swap is worth a hint.
func suggest(k, path string) string {
	t := reflect.TypeFor[Config]()
	if path != "" {
		for part := range strings.SplitSeq(path, ".") {
			if i := strings.IndexByte(part, '['); i >= 0 {
				part = part[:i]
			}
			t = fieldType(t, part)
			if t == nil {
				return ""
			}
		}
	}
	best, bestDist := "", 3
	for f := range t.Fields() {
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		if d := editDistance(k, tag); d < bestDist {
			best, bestDist = tag, d
		}
	}
	return best
}

// fieldType returns the struct type behind the field tagged name of the
// struct t, looking through pointers and slices; nil when there is none.
func fieldType(t reflect.Type, name string) reflect.Type {
	for f := range t.Fields() {
		if f.Tag.Get("mapstructure") != name {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct {
			return nil
		}
		return ft
	}
	return nil
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of neighbours cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
