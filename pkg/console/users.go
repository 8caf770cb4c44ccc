package console

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The two roles of the console. A viewer sees everything; an admin may
// also act (drain, disable, enable, switchover), as the control API's
// admin level.
const (
	RoleViewer = "viewer"
	RoleAdmin  = "admin"
)

// User is one line of the users file.
type User struct {
	Name string
	Hash []byte // bcrypt
	Role string
}

// ParseUsers reads a users file: "name:bcrypt-hash:role" a line, blank
// lines and # comments ignored. Every problem is reported with its line.
func ParseUsers(data []byte) (map[string]User, error) {
	users := map[string]User{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			errs = append(errs, fmt.Errorf("line %d: want name:bcrypt-hash:role", ln))
			continue
		}
		u := User{Name: f[0], Hash: []byte(f[1]), Role: f[2]}
		if _, err := bcrypt.Cost(u.Hash); err != nil {
			errs = append(errs, fmt.Errorf("line %d: user %s: not a bcrypt hash: %w", ln, u.Name, err))
			continue
		}
		if u.Role != RoleAdmin && u.Role != RoleViewer {
			errs = append(errs, fmt.Errorf("line %d: user %s: role must be admin or viewer (got %q)", ln, u.Name, u.Role))
			continue
		}
		if err := checkName(u.Name); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", ln, err))
			continue
		}
		users[u.Name] = u
	}
	return users, errors.Join(errs...)
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t#") {
		return fmt.Errorf("user name %q: must be non-empty, without ':', '#' or spaces", name)
	}
	return nil
}

// SetPassword adds user to the users file at path or updates its
// password and role, keeping every other line, and writes the file
// (mode 0600) by renaming a temporary one over it.
func SetPassword(path, user, password, role string) error {
	return setPassword(path, user, password, role, bcrypt.DefaultCost)
}

// setPassword is SetPassword with the bcrypt cost (tests use the least).
func setPassword(path, user, password, role string, cost int) error {
	if err := checkName(user); err != nil {
		return err
	}
	if role != RoleAdmin && role != RoleViewer {
		return fmt.Errorf("role must be admin or viewer (got %q)", role)
	}
	if len(password) < 8 {
		return errors.New("the password must have at least 8 characters")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return fmt.Errorf("hash the password: %w", err)
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	entry := user + ":" + string(hash) + ":" + role
	var out []string
	found := false
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && name == user {
			line, found = entry, true
		}
		if line != "" || len(out) > 0 {
			out = append(out, line)
		}
	}
	if !found {
		out = append(out, entry)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strings.Join(out, "\n") + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// userFile is the users file, read again when its modification time or
// size changes, so `tandem web passwd` takes effect without a restart.
type userFile struct {
	path string

	mu    sync.Mutex
	mod   time.Time
	size  int64
	users map[string]User
}

// load reads the file if it changed. A file that became unreadable or
// invalid keeps the users read last and returns the error.
func (f *userFile) load() (map[string]User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return f.users, fmt.Errorf("users file: %w", err)
	}
	if f.users != nil && fi.ModTime().Equal(f.mod) && fi.Size() == f.size {
		return f.users, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return f.users, fmt.Errorf("users file: %w", err)
	}
	users, err := ParseUsers(data)
	if err != nil {
		if f.users == nil {
			f.users = map[string]User{}
		}
		return f.users, fmt.Errorf("users file %s: %w", f.path, err)
	}
	f.users, f.mod, f.size = users, fi.ModTime(), fi.Size()
	return users, nil
}

// dummyHash is compared against when the user does not exist, so a
// login takes as long for an unknown name as for a wrong password. Made
// on first use: a node without a console never pays for it.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("tandem-no-such-user"), bcrypt.DefaultCost)
	return h
})

// check returns the user whose name and password match.
func (f *userFile) check(name, password string) (User, bool) {
	users, _ := f.load()
	u, ok := users[name]
	hash := u.Hash
	if !ok {
		hash = dummyHash()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		return User{}, false
	}
	return u, true
}
