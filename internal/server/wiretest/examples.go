package wiretest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Examples reads the example answers the aws CLI at cli ships for service
// (awscli/examples/<service>/<command>.rst, the answers AWS documents) and
// returns, per operation of m, the paths of the lists and maps those answers
// show empty ([] or {}): AWS sends them even when empty, so an answer must
// have them wherever their parent is present. Paths use [] for "every
// element", e.g. "tasks[].overrides.inferenceAcceleratorOverrides". Example
// blocks that are not valid JSON are skipped.
func Examples(cli, service string, m *Model) (map[string][]string, error) {
	_, dir, err := dataDirs(cli)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, service, "*.rst"))
	if err != nil {
		return nil, err
	}
	byKey := map[string]string{}
	for name := range m.Operations {
		byKey[strings.ToLower(name)] = name
	}
	out := map[string][]string{}
	for _, f := range files {
		op, ok := byKey[strings.ReplaceAll(strings.TrimSuffix(filepath.Base(f), ".rst"), "-", "")]
		if !ok {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, p := range out[op] {
			seen[p] = true
		}
		for _, block := range outputBlocks(string(text)) {
			var v any
			if json.Unmarshal([]byte(block), &v) != nil {
				continue
			}
			emptyPaths(v, "", seen)
		}
		paths := make([]string, 0, len(seen))
		for p := range seen {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		if len(paths) > 0 {
			out[op] = paths
		}
	}
	return out, nil
}

// outputBlocks returns the indented blocks that follow an "Output::" line.
func outputBlocks(text string) []string {
	lines := strings.Split(text, "\n")
	var blocks []string
	for i := 0; i < len(lines); i++ {
		if !strings.HasSuffix(strings.TrimSpace(lines[i]), "Output::") {
			continue
		}
		var b []string
		j := i + 1
		for ; j < len(lines) && (strings.TrimSpace(lines[j]) == "" || strings.HasPrefix(lines[j], " ")); j++ {
			b = append(b, lines[j])
		}
		blocks = append(blocks, strings.TrimSpace(strings.Join(b, "\n")))
		i = j - 1
	}
	return blocks
}

func emptyPaths(v any, path string, into map[string]bool) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			switch cc := c.(type) {
			case []any:
				if len(cc) == 0 {
					into[join(k)] = true
				}
			case map[string]any:
				if len(cc) == 0 {
					into[join(k)] = true
				}
			}
			emptyPaths(c, join(k), into)
		}
	case []any:
		for _, c := range x {
			emptyPaths(c, path+"[]", into)
		}
	}
}

// checkPresent reports the objects at path's parent that lack its last
// member.
func (c *checker) checkPresent(v any, path string) {
	parent, member := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, member = path[:i], path[i+1:]
	}
	var walk func(v any, segs []string, at string)
	walk = func(v any, segs []string, at string) {
		if len(segs) == 0 {
			obj, ok := v.(map[string]any)
			if !ok {
				return
			}
			if _, ok := obj[member]; !ok {
				c.addf(at+"."+member, "missing: AWS's example answers show it even when empty")
			}
			return
		}
		seg := segs[0]
		name, isList := strings.CutSuffix(seg, "[]")
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		child, ok := obj[name]
		if !ok {
			return
		}
		if !isList {
			walk(child, segs[1:], at+"."+name)
			return
		}
		arr, _ := child.([]any)
		for i, e := range arr {
			walk(e, segs[1:], at+"."+name+"["+itoa(i)+"]")
		}
	}
	var segs []string
	if parent != "" {
		segs = strings.Split(parent, ".")
	}
	walk(v, segs, "$")
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
