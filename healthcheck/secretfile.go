package healthcheck

import (
	"os"
	"sync"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

// secretFile holds a check's password from its file, read again when
// the file changes, so a password rotated in the directory and in the
// file is picked up without a reload. A file that cannot be read, or
// holds no password, keeps the last good one: a slip while editing it
// must not take every server out.
type secretFile struct {
	hc config.HealthCheck

	mu      sync.Mutex
	modTime time.Time
	size    int64
	value   string
}

// newSecretFile reads the password once; an error here is the
// config's to report.
func newSecretFile(hc config.HealthCheck) (*secretFile, error) {
	f := &secretFile{hc: hc}
	fi, err := os.Stat(hc.PasswordFile)
	if err == nil {
		f.modTime, f.size = fi.ModTime(), fi.Size()
	}
	f.value, err = hc.BindPassword()
	return f, err
}

// get returns the password, and a warning when the file changed but
// could not be read again.
func (f *secretFile) get() (value, warning string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.hc.PasswordFile)
	if err == nil && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.value, ""
	}
	v, rerr := f.hc.BindPassword()
	if rerr != nil {
		return f.value, "password_file: " + rerr.Error() + "; using the password read before"
	}
	f.value = v
	if err == nil {
		f.modTime, f.size = fi.ModTime(), fi.Size()
	}
	return f.value, ""
}
