package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/tandem-lb/tandem/pkg/api"
)

// LDAP through a TCP VIP (issue 14's figure): real slapd on be1 and be2,
// the ldap health check searching ou=people, ldapsearch clients looping
// through the VIP; one directory is emptied under them.

const (
	ldapSuffix = "dc=example,dc=org"
	ldapPeople = "ou=people," + ldapSuffix
	ldapAdmin  = "cn=admin," + ldapSuffix
)

var ldapPeopleUIDs = []string{"alice", "bob"}

// slapd runs slapd in box's namespace on port 389 and on a unix socket in
// the test folder (ldapi), through which the test populates and empties
// the directory from outside the namespace. Every entry of ou=people
// carries description: BOX, so a client sees who answered.
func (l *lab) slapd(box string) (ldapi string) {
	l.t.Helper()
	if _, err := os.Stat("/usr/sbin/slapd"); err != nil {
		l.t.Skip("needs slapd: apt-get install slapd ldap-utils")
	}
	if _, err := exec.LookPath("ldapsearch"); err != nil {
		l.t.Skip("needs ldapsearch: apt-get install ldap-utils")
	}
	dir := filepath.Join(l.dir, "slapd-"+box)
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		l.t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
database mdb
maxsize 10485760
suffix "%[2]s"
rootdn "%[3]s"
rootpw admin-pw
directory %[1]s/db
access to * by * read
`, dir, ldapSuffix, ldapAdmin)
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		l.t.Fatal(err)
	}
	sock := strings.ReplaceAll(filepath.Join(dir, "ldapi"), "/", "%2F")
	l.agentBG(box, "slapd-"+box, "/usr/sbin/slapd", "-f", confFile, "-h", "ldap://0.0.0.0:389/ ldapi://"+sock, "-d", "0")
	ldapi = "ldapi://" + sock
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := ldap.DialURL(ldapi)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(l.nodes["slapd-"+box].log)
			l.t.Fatalf("slapd in %s not answering on %s: %v\n%s", box, ldapi, err, tail(string(b), 30))
		}
	}
	l.ldapPopulate(ldapi, box)
	return ldapi
}

// ldapAdminConn binds as the directory's admin over ldapi.
func (l *lab) ldapAdminConn(ldapi string) *ldap.Conn {
	l.t.Helper()
	c, err := ldap.DialURL(ldapi)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := c.Bind(ldapAdmin, "admin-pw"); err != nil {
		c.Close()
		l.t.Fatal(err)
	}
	return c
}

// ldapPopulate adds the suffix, ou=people and the people.
func (l *lab) ldapPopulate(ldapi, box string) {
	l.t.Helper()
	c := l.ldapAdminConn(ldapi)
	defer c.Close()
	add := func(dn string, attrs map[string][]string) {
		req := ldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		if err := c.Add(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
			l.t.Fatalf("add %s: %v", dn, err)
		}
	}
	add(ldapSuffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"example"}, "o": {"Example"}})
	add(ldapPeople, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}})
	for _, uid := range ldapPeopleUIDs {
		add("uid="+uid+","+ldapPeople, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {uid},
			"cn": {uid}, "sn": {uid}, "description": {box}})
	}
}

// ldapEmpty deletes the people, as a botched import or a wiped database
// would: slapd still binds and answers searches, with nothing.
func (l *lab) ldapEmpty(ldapi string) {
	l.t.Helper()
	c := l.ldapAdminConn(ldapi)
	defer c.Close()
	for _, uid := range ldapPeopleUIDs {
		if err := c.Del(ldap.NewDelRequest("uid="+uid+","+ldapPeople, nil)); err != nil {
			l.t.Fatalf("delete %s: %v", uid, err)
		}
	}
}

// ldapSearch is one search of the client loop.
type ldapSearch struct {
	at      time.Time
	rc      int    // ldapsearch's exit status
	entries int    // entries found (2 when the directory is whole)
	who     string // description of the first entry: the server; "-" for none
}

func (s ldapSearch) failed() bool { return s.rc != 0 || s.entries != len(ldapPeopleUIDs) }

// ldapClientLoop starts a client searching ou=people through the VIP in
// a loop, a new connection each, until stop exists or max searches
// (each bounded to 2 s); one line per search in out.
func (l *lab) ldapClientLoop(out, stop string, max int) *proc {
	script := fmt.Sprintf(`i=0
while [ $i -lt %[1]d ] && [ ! -e %[2]s ]; do
  i=$((i+1))
  t=$(date +%%s%%N)
  res=$(ldapsearch -x -LLL -H ldap://%[3]s -o nettimeout=2 -l 2 -b %[4]s -s one '(objectClass=inetOrgPerson)' description 2>&1)
  rc=$?
  n=$(printf '%%s\n' "$res" | grep -c '^dn:')
  who=$(printf '%%s\n' "$res" | sed -n 's/^description: //p' | head -n 1)
  echo "$t $rc $n ${who:--}" >>%[5]s
  sleep 0.01
done`, max, stop, vip, ldapPeople, out)
	return l.agentBG("client", "ldapsearch-loop", "sh", "-c", script)
}

// readLDAPSearches parses the loop's output.
func readLDAPSearches(t *testing.T, path string) []ldapSearch {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []ldapSearch
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		rc, _ := strconv.Atoi(f[1])
		n, _ := strconv.Atoi(f[2])
		out = append(out, ldapSearch{at: time.Unix(0, ns), rc: rc, entries: n, who: f[3]})
	}
	return out
}

// TestLDAPEmptiedThroughTheVIP: a directory emptied under clients that
// search through the VIP is taken out within interval × fall (+ the
// timeout of the probe under way), and from then on no client search
// fails. The searches that reach the emptied server before that are
// counted and logged: a TCP proxy cannot see that an LDAP answer is
// empty, so those fail, and the test says how many.
func TestLDAPEmptiedThroughTheVIP(t *testing.T) {
	l := newLab(t)
	ldapi1 := l.slapd("be1")
	l.slapd("be2")
	const (
		interval = 200 * time.Millisecond
		timeout  = 150 * time.Millisecond
		fall     = 2
	)
	l.start("lb1", nodeOpts{preempt: true, extra: fmt.Sprintf(`clusters:
  - name: ldap
    vip: %s
    port: 389
    algorithm: round_robin
    health_check: {type: ldap, base: "%s", filter: "(objectClass=inetOrgPerson)", scope: one, min_entries: 2, interval: %s, timeout: %s, rise: 1, fall: %d}
    servers:
      - {name: be1, address: "198.18.0.21:389"}
      - {name: be2, address: "198.18.0.22:389"}
`, vip, ldapPeople, interval, timeout, fall)})
	l.waitFor("lb1 MASTER with both directories up", 15*time.Second, func() bool {
		st, err := l.status("lb1")
		if err != nil || st.State != "MASTER" || !l.holdsVIP("lb1") || len(st.Clusters) != 1 {
			return false
		}
		for _, s := range st.Clusters[0].Servers {
			if !s.Healthy || s.LastCheckAt == nil {
				return false
			}
		}
		return true
	})

	out, stop := filepath.Join(l.dir, "searches.txt"), filepath.Join(l.dir, "searches.stop")
	loop := l.ldapClientLoop(out, stop, 3000)
	more := func(n int, what string) {
		t.Helper()
		target := len(readLDAPSearches(t, out)) + n
		l.waitFor(what, 60*time.Second, func() bool { return len(readLDAPSearches(t, out)) >= target })
	}
	be1Healthy := func(want bool) func() bool {
		return func() bool {
			st, err := l.status("lb1")
			return err == nil && st.Clusters[0].Servers[0].Healthy == want
		}
	}
	// lastEvent is when lb1 last recorded a health event starting with
	// prefix: stamped as it acted, after the pool was refreshed.
	lastEvent := func(prefix string) (time.Time, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		evs, err := api.NewClient(filepath.Join(l.dir, "lb1.sock")).Events(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Kind == "health" && strings.HasPrefix(evs[i].Message, prefix) {
				return evs[i].At, evs[i].Message
			}
		}
		t.Fatalf("no health event %q among %+v", prefix, evs)
		return time.Time{}, ""
	}

	type window struct{ emptied, out time.Time }
	var windows []window
	const trials = 3
	// interval × fall, the timeout of the probe already running, and
	// 100 ms for the processes' scheduling (ldapdelete's own run is
	// inside the measured time; CI machines are shared)
	bound := fall*interval + timeout + 100*time.Millisecond
	more(20, "20 searches before the first trial")
	for i := range trials {
		emptied := time.Now()
		l.ldapEmpty(ldapi1)
		l.waitFor("be1 taken out", 10*time.Second, be1Healthy(false))
		out1, why := lastEvent("ldap/be1 DOWN")
		if took := out1.Sub(emptied); took > bound {
			t.Errorf("trial %d: be1 taken out %v after its directory was emptied, want within interval × fall + one probe's timeout + 100ms = %v (%s)",
				i, took.Round(time.Millisecond), bound, why)
		}
		windows = append(windows, window{emptied, out1})
		more(10, "10 searches with be1 out")
		l.ldapPopulate(ldapi1, "be1")
		l.waitFor("be1 back", 10*time.Second, be1Healthy(true))
		more(10, "10 searches with be1 back")
	}
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-loop.done:
		delete(l.nodes, "ldapsearch-loop")
	case <-time.After(10 * time.Second):
		t.Fatal("the search loop did not stop")
	}

	// A failed search outside the windows (emptied → taken out) is a
	// failure of Tandem's; inside them, of the check's reach.
	searches := readLDAPSearches(t, out)
	var inWindows, failedIn, failedOut int
	var took []string
	for _, w := range windows {
		took = append(took, w.out.Sub(w.emptied).Round(time.Millisecond).String())
	}
	for _, s := range searches {
		in := false
		for _, w := range windows {
			if !s.at.Before(w.emptied) && s.at.Before(w.out) {
				in = true
			}
		}
		switch {
		case in:
			inWindows++
			if s.failed() {
				failedIn++
			}
		case s.failed():
			failedOut++
			t.Errorf("search at %s failed outside the windows (rc %d, %d entries, from %s)", s.at.Format("15:04:05.000"), s.rc, s.entries, s.who)
		}
	}
	span := searches[len(searches)-1].at.Sub(searches[0].at)
	t.Logf("%d trials: emptied → taken out in %s (interval %v × fall %d + timeout = %v); %d searches in %v (%.1f/s, one client, a new connection each), %d of them inside those windows: %d FAILED (empty answers from be1, which a TCP proxy cannot see); %d failed outside",
		trials, strings.Join(took, ", "), interval, fall, bound, len(searches), span.Round(time.Millisecond),
		float64(len(searches))/span.Seconds(), inWindows, failedIn, failedOut)
}
