package nft

import "slices"

// The reconcile plan: what one Apply transaction does to the objects of
// the table, decided from names and set shapes alone so it is tested
// without a kernel. Like Kubernetes' nftables proxier, the table itself
// is never recreated: chains are flushed and refilled, static sets are
// flushed and refilled, dynamic sets (persistence, connection counts)
// are left alone when their shape still fits, and whatever the Spec no
// longer has is deleted after the rules that referenced it are gone.

// setAction is what happens to one wanted set.
type setAction int

const (
	setCreate   setAction = iota // absent: add it with its elements
	setRefill                    // static and present: flush, add elements
	setKeep                      // dynamic and present with the same shape: untouched
	setRecreate                  // present with another shape: delete, add
)

func (a setAction) String() string {
	return [...]string{"create", "refill", "keep", "recreate"}[a]
}

// setWant is a set the Spec needs. Shape is everything that cannot change
// on an existing set (key and data types, flags, size); Dynamic sets are
// filled by the packet path and must survive applies.
type setWant struct {
	Name    string
	Shape   string
	Dynamic bool
}

// tableState is what the table holds (existing) or should hold (wanted).
type tableState struct {
	Chains   []string
	Sets     map[string]string // name -> shape (existing only)
	Counters []string
}

// plan is the ordered content of one transaction.
type plan struct {
	NewChains   []string // absent: add
	FlushChains []string // present and wanted: flush, then refill
	DelChains   []string // present, not wanted: delete (after all flushes)
	Sets        map[string]setAction
	DelSets     []string
	NewCounters []string // absent: add (present ones keep their values)
	DelCounters []string
}

func makePlan(have tableState, wantChains []string, wantSets []setWant, wantCounters []string) plan {
	p := plan{Sets: make(map[string]setAction, len(wantSets))}
	for _, c := range wantChains {
		if slices.Contains(have.Chains, c) {
			p.FlushChains = append(p.FlushChains, c)
		} else {
			p.NewChains = append(p.NewChains, c)
		}
	}
	for _, c := range have.Chains {
		if !slices.Contains(wantChains, c) {
			p.DelChains = append(p.DelChains, c)
		}
	}
	wanted := make(map[string]bool, len(wantSets))
	for _, s := range wantSets {
		wanted[s.Name] = true
		shape, ok := have.Sets[s.Name]
		switch {
		case !ok:
			p.Sets[s.Name] = setCreate
		case shape != s.Shape:
			p.Sets[s.Name] = setRecreate
		case s.Dynamic:
			p.Sets[s.Name] = setKeep
		default:
			p.Sets[s.Name] = setRefill
		}
	}
	for name := range have.Sets {
		if !wanted[name] {
			p.DelSets = append(p.DelSets, name)
		}
	}
	slices.Sort(p.DelSets)
	for _, c := range wantCounters {
		if !slices.Contains(have.Counters, c) {
			p.NewCounters = append(p.NewCounters, c)
		}
	}
	for _, c := range have.Counters {
		if !slices.Contains(wantCounters, c) {
			p.DelCounters = append(p.DelCounters, c)
		}
	}
	return p
}
