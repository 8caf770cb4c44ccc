package dataplane

import (
	"hash/fnv"
	"slices"
)

// MaglevSize is the size of a Maglev lookup table: a prime well above the
// servers a cluster has (the paper's rule: M ≫ N keeps every server's
// share within about N/M of its weight's), small enough that the kernel
// map holding it is rewritten in well under a millisecond.
const MaglevSize = 1021

// MaglevBackend is one server as the Maglev table sees it: an identity
// that is the same on both boxes (the server's name and address, not its
// position in the config) and a weight.
type MaglevBackend struct {
	ID     string
	Weight int
}

// Maglev builds a Maglev consistent-hashing lookup table of size entries
// (size must be prime; MaglevSize) over backends: entry i is the index in
// backends of the server that slot i goes to, or the table is nil without
// backends.
//
// Each backend walks its own permutation of the slots (an offset and a
// skip from two hashes of its ID) and the backends take turns claiming the
// next free slot of their permutation, a backend of weight w taking w
// turns for every maxWeight turns of the heaviest. The table therefore
// depends only on the set of backends, not on their order or on anything
// local to a box, so both boxes of the pair build the same table, and when
// one backend leaves, mostly its own slots change hands (Eisenbud et al.,
// "Maglev", NSDI 2016, section 3.4).
func Maglev(backends []MaglevBackend, size int) []int {
	if len(backends) == 0 || size < 2 {
		return nil
	}
	order := make([]int, len(backends)) // backends sorted by ID: order-independent turns
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case backends[a].ID < backends[b].ID:
			return -1
		case backends[a].ID > backends[b].ID:
			return 1
		}
		return 0
	})
	type walk struct{ offset, skip, next, credit, weight int }
	walks := make([]walk, len(order))
	maxW := 1
	for k, i := range order {
		w := max(backends[i].Weight, 1)
		maxW = max(maxW, w)
		walks[k] = walk{
			offset: int(hash64(backends[i].ID, 0x9e3779b97f4a7c15) % uint64(size)),
			skip:   int(hash64(backends[i].ID, 0xc2b2ae3d27d4eb4f)%uint64(size-1)) + 1,
			weight: w,
		}
	}
	table := make([]int, size)
	for i := range table {
		table[i] = -1
	}
	filled := 0
	for filled < size {
		for k := range walks {
			w := &walks[k]
			w.credit += w.weight
			if w.credit < maxW {
				continue
			}
			w.credit -= maxW
			for { // the backend's next preferred slot that is still free
				slot := (w.offset + w.next*w.skip) % size
				w.next++
				if table[slot] < 0 {
					table[slot] = order[k]
					filled++
					break
				}
			}
			if filled == size {
				break
			}
		}
	}
	return table
}

// hash64 is FNV-1a of s mixed with seed: stable across boxes, releases
// and architectures, which is all the table needs.
func hash64(s string, seed uint64) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	x := h.Sum64() ^ seed
	// A finaliser (splitmix64) so the two seeds give unrelated values.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
