package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a config file: it must never
// panic, and a config it rejects must come with problems that name a key
// or the file, never an empty error.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"lb1.yaml", "lb2.yaml", "example-full.yaml"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "configs", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("node: {name: lb1}\nfailover: {priority: high}\n"))
	f.Add([]byte("clusters:\n  - name: web\n    servers: [{name: a, address: x}]\n"))
	f.Add([]byte(":\n- - -\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		fh, err := os.CreateTemp(dir, "fuzz*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		path := fh.Name()
		defer os.Remove(path)
		if _, err := fh.Write(data); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		_, err = Load(path)
		if err == nil {
			return
		}
		var probs Errors
		if errors.As(err, &probs) {
			if len(probs) == 0 {
				t.Fatal("an empty list of problems")
			}
			for _, p := range probs {
				if p.String() == "" || (p.Key == "" && p.File == "") {
					t.Fatalf("a problem that names nothing: %+v", p)
				}
			}
		} else if err.Error() == "" {
			t.Fatal("an empty error")
		}
	})
}
