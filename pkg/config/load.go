package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes the environment variables that override the file:
// TANDEM_CLUSTER_SECRET sets cluster.secret.
const EnvPrefix = "TANDEM"

// Load reads the YAML config at path, applies TANDEM_* environment
// overrides, decodes it strictly (unknown keys and wrong types are
// errors), fills in the defaults and validates it.
//
// When the file could be read and parsed, Load returns the config even if
// it is invalid, together with an Errors listing every problem as
// FILE:LINE: key.path: message; callers must not run an invalid config. A
// file that cannot be read or is not YAML yields a nil config.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	lines, err := lineMap(src)
	if err != nil {
		return nil, yamlProblems(path, err).err()
	}

	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml") // whatever the file's extension
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	env := bindEnv(v)
	if err := v.ReadInConfig(); err != nil {
		var perr viper.ConfigParseError
		if errors.As(err, &perr) {
			return nil, yamlProblems(path, err).err()
		}
		return nil, fmt.Errorf("read config: %w", err)
	}

	c := Default()
	c.File, c.lines, c.env = path, lines, env
	derr := v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) {
		dc.WeaklyTypedInput = false
		dc.DecodeHook = decodeHook
	})
	probs := c.decodeProblems(derr)
	c.ApplyDefaults()

	// A key that failed to decode keeps its default or zero value; do not
	// report it a second time as out of range.
	var verrs Errors
	if err := c.Validate(); err != nil {
		verrs = err.(Errors)
	}
	for _, p := range verrs {
		if !coveredBy(p.Key, probs) {
			probs = append(probs, p)
		}
	}
	return &c, probs.err()
}

// coveredBy reports whether key is, or lies under, the key of a problem in
// probs.
func coveredBy(key string, probs Errors) bool {
	for _, p := range probs {
		if p.Key == "" {
			continue
		}
		if key == p.Key || strings.HasPrefix(key, p.Key+".") || strings.HasPrefix(key, p.Key+"[") {
			return true
		}
	}
	return false
}

// bindEnv binds TANDEM_SECTION_KEY for every key of the node, cluster and
// failover sections (lists of structs excepted), so the environment can
// set keys that are absent from the file; viper's AutomaticEnv alone only
// overrides keys it already knows. It returns the keys whose variable is
// set, with the variable's name.
func bindEnv(v *viper.Viper) map[string]string {
	set := make(map[string]string)
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for f := range t.Fields() {
			tag := f.Tag.Get("mapstructure")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + "." + tag
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(key, f.Type)
				continue
			}
			name := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
			_ = v.BindEnv(key, name) // only fails on an empty key
			if os.Getenv(name) != "" {
				set[key] = name
			}
		}
	}
	walk("node", reflect.TypeFor[Node]())
	walk("cluster", reflect.TypeFor[Cluster]())
	walk("failover", reflect.TypeFor[Failover]())
	return set
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeHook converts what YAML and the environment give to the field
// types, strictly: durations need a unit ("500ms", not 500), and strings
// (all that environment variables hold) become integers, booleans and
// comma-separated lists only when they parse as such.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	if to == durationType {
		switch d := data.(type) {
		case string:
			v, err := time.ParseDuration(d)
			if err != nil {
				return nil, fmt.Errorf("expected a duration like 500ms or 2s, got %q", d)
			}
			return v, nil
		case int, int64, uint64, float64:
			if reflect.ValueOf(d).IsZero() {
				return time.Duration(0), nil
			}
			return nil, fmt.Errorf("a duration needs a unit, like 500ms or 2s (got %v)", d)
		}
		return data, nil
	}
	if from.Kind() == reflect.Float64 && to.Kind() == reflect.Int {
		f := data.(float64)
		if f != float64(int64(f)) {
			return nil, fmt.Errorf("expected an integer, got %v", f)
		}
		return int64(f), nil
	}
	if err := checkShape(to, data); err != nil {
		return nil, err
	}
	if from.Kind() != reflect.String {
		return data, nil
	}
	s := data.(string)
	switch {
	case to.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("expected an integer, got %q", s)
		}
		return n, nil
	case to.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("expected true or false, got %q", s)
		}
		return b, nil
	case to.Kind() == reflect.Slice && to.Elem().Kind() == reflect.String:
		var out []string
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out, nil
	}
	return data, nil
}

// checkShape rejects a scalar where a mapping or a list belongs (a string
// may still become a list of strings), with the words describeType uses.
func checkShape(to reflect.Type, data any) error {
	if to.Kind() == reflect.Pointer {
		to = to.Elem()
	}
	switch to.Kind() {
	case reflect.Struct:
		if _, ok := data.(map[string]any); !ok && to != durationType {
			return fmt.Errorf("expected %s, got %s", describeType(to), describeValue(data))
		}
	case reflect.Slice:
		_, list := data.([]any)
		_, str := data.(string)
		if !list && !(str && to.Elem().Kind() == reflect.String) {
			return fmt.Errorf("expected %s, got %s", describeType(to), describeValue(data))
		}
	}
	return nil
}

// decodeProblems turns mapstructure's errors into problems, one per
// unknown key or badly typed value, each at its line.
func (c *Config) decodeProblems(err error) Errors {
	var probs Errors
	var walk func(err error)
	walk = func(err error) {
		var de *mapstructure.DecodeError
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case *mapstructure.DecodeError:
			probs = append(probs, c.decodeProblem(e)...)
		default:
			if errors.As(err, &de) {
				walk(errors.Unwrap(err))
				return
			}
			probs = append(probs, Problem{File: c.File, Msg: err.Error()})
		}
	}
	walk(err)
	return probs
}

const invalidKeys = "has invalid keys: "

func (c *Config) decodeProblem(e *mapstructure.DecodeError) Errors {
	inner := e.Unwrap()
	msg := inner.Error()
	if rest, ok := strings.CutPrefix(msg, invalidKeys); ok {
		var probs Errors
		for k := range strings.SplitSeq(rest, ", ") {
			key := k
			if e.Name() != "" {
				key = e.Name() + "." + k
			}
			hint := ""
			if s := suggest(k, e.Name()); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			probs = append(probs, c.problem(key, "unknown key%s", hint))
		}
		return probs
	}
	var ute *mapstructure.UnconvertibleTypeError
	if errors.As(inner, &ute) {
		msg = fmt.Sprintf("expected %s, got %s", describeType(ute.Expected.Type()), describeValue(ute.Value))
	}
	return Errors{c.problem(e.Name(), "%s", msg)}
}

// describeType names a field type the way an operator writes it in YAML.
func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration like 500ms"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Pointer, t.Kind() == reflect.Map:
		return "a mapping of keys"
	}
	return t.String()
}

// describeValue names the kind of a decoded YAML value.
func describeValue(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
