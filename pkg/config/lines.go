package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// lineMap parses src as YAML and maps every key path in it to its line:
// "failover.garp.count" to the line of "count:", "cluster.peers[1]" and
// "clusters[2]" to the line of the list item. Keys are lower-cased, as
// viper does.
func lineMap(src []byte) (map[string]int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	lines := make(map[string]int)
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			// Worded so yamlProblems finds the line.
			return nil, fmt.Errorf("yaml: line %d: the top level must be a mapping of keys (node:, cluster:, failover:, clusters:)", root.Line)
		}
		walkLines(root, "", lines)
	}
	return lines, nil
}

func walkLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.ToLower(k.Value)
			if path != "" {
				p = path + "." + p
			}
			if _, seen := lines[p]; !seen {
				lines[p] = k.Line
			}
			walkLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			lines[p] = item.Line
			walkLines(item, p, lines)
		}
	}
	// Aliases are not followed: a problem under one points at the alias.
}

var yamlLineRE = regexp.MustCompile(`line (\d+): ([^\n]*)`)

// yamlProblems turns a YAML syntax error (from yaml.v3 directly or through
// viper) into problems with their lines.
func yamlProblems(file string, err error) Errors {
	var probs Errors
	for _, m := range yamlLineRE.FindAllStringSubmatch(err.Error(), -1) {
		line, _ := strconv.Atoi(m[1])
		probs = append(probs, Problem{File: file, Line: line, Msg: "invalid YAML: " + m[2]})
	}
	if len(probs) == 0 {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		probs = Errors{{File: file, Msg: "invalid YAML: " + msg}}
	}
	return probs
}
