package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// OutageReport is what `labtools outage` prints.
type OutageReport struct {
	Outages []OutageJSON `json:"outages"`
	Count   int          `json:"count"`
	TotalMS float64      `json:"total_ms"`
	MaxMS   float64      `json:"max_ms"`
	Failed  int          `json:"failed"`
	Open    bool         `json:"open"` // one of them was still going on
}

// cmdOutage reads a probe's -out file and reports the outages that start in
// [-after, -before). Only the file's last run (from its last "start" line)
// counts. With the run's summary line present its outages are used, else
// (probe still running) they are rebuilt from the ok/fail lines.
func cmdOutage(args []string) error {
	fs := flag.NewFlagSet("outage", flag.ContinueOnError)
	in := fs.String("in", "", "probe event file (required)")
	after := fs.String("after", "", "only outages starting at or after this RFC3339 time")
	before := fs.String("before", "", "only outages starting before this RFC3339 time")
	print := fs.String("print", "", "print only this field: count|total_ms|max_ms|failed|open")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if *in == "" || fs.NArg() != 0 {
		return usageError("-in is required; no positional arguments")
	}
	var a, b time.Time
	var err error
	if *after != "" {
		if a, err = time.Parse(time.RFC3339Nano, *after); err != nil {
			return usageError("-after: " + err.Error())
		}
	}
	if *before != "" {
		if b, err = time.Parse(time.RFC3339Nano, *before); err != nil {
			return usageError("-before: " + err.Error())
		}
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	var evs []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return fmt.Errorf("%s: %v", *in, err)
		}
		if e.Event == "start" {
			evs = evs[:0]
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	outs, err := outagesFromEvents(evs)
	if err != nil {
		return err
	}
	rep := report(Filter(outs, a, b))
	return printReport(rep, *print)
}

func outagesFromEvents(evs []Event) ([]Outage, error) {
	parse := func(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Event == "summary" && evs[i].Summary != nil {
			var out []Outage
			for _, o := range evs[i].Summary.Outages {
				s, err := parse(o.Start)
				if err != nil {
					return nil, err
				}
				e, err := parse(o.End)
				if err != nil {
					return nil, err
				}
				out = append(out, Outage{Start: s, End: e, Failed: o.Failed, Open: o.Open})
			}
			return out, nil
		}
	}
	var out []Outage
	var open *Outage
	for _, e := range evs {
		at, err := parse(e.At)
		if err != nil {
			return nil, err
		}
		switch e.Event {
		case "fail":
			open = &Outage{Start: at, End: at, Open: true}
		case "ok":
			if e.OutageStart != "" && e.OutageMS != nil {
				s, err := parse(e.OutageStart)
				if err != nil {
					return nil, err
				}
				out = append(out, Outage{Start: s, End: at, Failed: e.Failed})
			}
			open = nil
		}
	}
	if open != nil {
		out = append(out, *open)
	}
	return out, nil
}

func report(outs []Outage) OutageReport {
	r := OutageReport{Outages: []OutageJSON{}}
	for _, o := range outs {
		j := outageJSON(o)
		r.Outages = append(r.Outages, j)
		r.Count++
		r.TotalMS += j.MS
		if j.MS > r.MaxMS {
			r.MaxMS = j.MS
		}
		r.Failed += o.Failed
		r.Open = r.Open || o.Open
	}
	return r
}

func printReport(r OutageReport, field string) error {
	switch field {
	case "":
		return json.NewEncoder(os.Stdout).Encode(r)
	case "count":
		fmt.Println(r.Count)
	case "total_ms":
		fmt.Printf("%.3f\n", r.TotalMS)
	case "max_ms":
		fmt.Printf("%.3f\n", r.MaxMS)
	case "failed":
		fmt.Println(r.Failed)
	case "open":
		fmt.Println(r.Open)
	default:
		return usageError("-print: one of count|total_ms|max_ms|failed|open")
	}
	return nil
}
