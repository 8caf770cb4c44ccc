package ctsync

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestClassifyProbe(t *testing.T) {
	cases := []struct {
		name     string
		dial     error
		loaded   bool
		query    error
		want     error
		mentions string
	}{
		{"no nfnetlink", syscall.EPROTONOSUPPORT, true, nil, ErrNoNfnetlink, "CONFIG_NETFILTER_NETLINK"},
		{"no privilege to open", syscall.EPERM, true, nil, ErrPermission, "CAP_NET_ADMIN"},
		{"no nf_conntrack", nil, false, nil, ErrNoConntrack, "nf_conntrack"},
		{"no ctnetlink", nil, true, syscall.EINVAL, ErrNoCtnetlink, "nf_conntrack_netlink"},
		{"ctnetlink refused", nil, true, syscall.EOPNOTSUPP, ErrNoCtnetlink, "CONFIG_NF_CT_NETLINK"},
		{"no privilege to query", nil, true, syscall.EPERM, ErrPermission, "CAP_NET_ADMIN"},
		{"all there", nil, true, nil, nil, ""},
	}
	for _, c := range cases {
		err := classifyProbe(c.dial, c.loaded, c.query)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mentions) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.want, c.mentions)
		}
	}
}
