package wiretest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// CLIv2 is where scripts/setup installs aws CLI v2 (Debian's awscli).
const CLIv2 = "/usr/bin/aws"

// CLIv1 returns an installed aws CLI v1 (pyenv's), or "" when there is none.
// It is not installable from the registries this project uses, so tests
// that use it skip without it.
func CLIv1() string {
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".pyenv")
	}
	found, _ := filepath.Glob(filepath.Join(root, "versions", "*", "bin", "aws"))
	sort.Strings(found)
	for i := len(found) - 1; i >= 0; i-- {
		if st, err := os.Stat(found[i]); err == nil && st.Mode()&0o111 != 0 {
			return found[i]
		}
	}
	return ""
}

// locate prints the data directory of the botocore the CLI runs with: the
// copy vendored in aws CLI v2 (awscli.botocore) or the botocore package v1
// depends on.
const locate = `import os
try:
    import awscli.botocore as b
except ImportError:
    import botocore as b
print(os.path.join(os.path.dirname(b.__file__), "data"))
import awscli
print(os.path.join(os.path.dirname(awscli.__file__), "examples"))
`

// FindModel returns the path of service's model (e.g. "ecs", "eks") in the
// botocore the aws CLI at cli runs with: the newest API version's
// service-2.json or service-2.json.gz.
func FindModel(cli, service string) (string, error) {
	data, _, err := dataDirs(cli)
	if err != nil {
		return "", err
	}
	versions, err := os.ReadDir(filepath.Join(data, service))
	if err != nil {
		return "", fmt.Errorf("the aws CLI at %s has no %s model: %w", cli, service, err)
	}
	var names []string
	for _, v := range versions {
		if v.IsDir() {
			names = append(names, v.Name())
		}
	}
	sort.Strings(names)
	for i := len(names) - 1; i >= 0; i-- {
		for _, f := range []string{"service-2.json", "service-2.json.gz"} {
			p := filepath.Join(data, service, names[i], f)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("the aws CLI at %s has no service-2.json for %s under %s", cli, service, filepath.Join(data, service))
}

// interpreter reads the Python interpreter from the CLI script's #! line.
func interpreter(cli string) (string, error) {
	f, err := os.Open(cli)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	line, ok := strings.CutPrefix(strings.TrimSpace(line), "#!")
	fields := strings.Fields(line)
	if !ok || len(fields) == 0 {
		return "", fmt.Errorf("%s is not a Python script with a #! line, so its botocore cannot be found", cli)
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
		return exec.LookPath(fields[1])
	}
	return fields[0], nil
}

// Installed loads service's model from aws CLI v2 (required: an error says
// to run scripts/setup) and, when an aws CLI v1 is installed, from its
// botocore too, which is usually newer. note says why there is no second
// model.
func Installed(service string) (models []*Model, note string, err error) {
	p, err := FindModel(CLIv2, service)
	if err != nil {
		return nil, "", fmt.Errorf("%w; run scripts/setup (the README's commands) to install the aws CLI", err)
	}
	m, err := Load(p)
	if err != nil {
		return nil, "", err
	}
	models = append(models, m)
	v1 := CLIv1()
	if v1 == "" {
		return models, "no aws CLI v1 is installed (pyenv's; it is not installable here): checked against v2's model alone", nil
	}
	p, err = FindModel(v1, service)
	if err != nil {
		return nil, "", err
	}
	if m, err = Load(p); err != nil {
		return nil, "", err
	}
	return append(models, m), "", nil
}

// dataDirs returns the botocore data directory and the aws CLI examples
// directory of the CLI at cli.
func dataDirs(cli string) (data, examples string, err error) {
	if _, err := os.Stat(cli); err != nil {
		return "", "", fmt.Errorf("%w at %s (scripts/setup installs it, Debian package awscli): %v", errNoCLI, cli, err)
	}
	python, err := interpreter(cli)
	if err != nil {
		return "", "", err
	}
	cmd := exec.Command(python, "-c", locate)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("finding the botocore data of %s with %s: %v: %s", cli, python, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return "", "", fmt.Errorf("finding the botocore data of %s: unexpected answer %q", cli, out)
	}
	return lines[0], lines[1], nil
}
