package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"go.yaml.in/yaml/v4"

	"github.com/kycbatch/kycbatch/internal/metrics"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

const (
	alertsFile     = "prometheus/alerts.yml"
	alertTestsFile = "prometheus/alerts_test.yml"
	dashboardFile  = "grafana/kycbatch.json"
)

// promtool is Debian's prometheus package's rule checker.
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: apt-get install -y prometheus")
	}
	return bin
}

// ruleFile is what the tests read of alerts.yml.
type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	var rules ruleFile
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	return rules
}

func TestAlertRulesCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertRulesFire runs alerts_test.yml with promtool test rules. promtool
// compares an expected alert's annotations whole: the test fills them in
// from alerts.yml, with the alert's expected labels in the templates, so
// that the texts live in one place.
func TestAlertRulesFire(t *testing.T) {
	annotations := map[string]map[string]string{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			annotations[r.Alert] = r.Annotations
		}
	}
	b, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	var tests map[string]any
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	tests["rule_files"] = []string{rules}
	label := regexp.MustCompile(`\{\{ \$labels\.(\w+) \}\}`)
	for _, tc := range tests["tests"].([]any) {
		for _, at := range tc.(map[string]any)["alert_rule_test"].([]any) {
			at := at.(map[string]any)
			want, ok := annotations[at["alertname"].(string)]
			if !ok {
				t.Fatalf("alerts_test.yml tests %s, which alerts.yml does not define", at["alertname"])
			}
			exp, _ := at["exp_alerts"].([]any)
			for _, e := range exp {
				e := e.(map[string]any)
				labels, _ := e["exp_labels"].(map[string]any)
				filled := map[string]string{}
				for k, v := range want {
					filled[k] = label.ReplaceAllStringFunc(v, func(m string) string {
						s, _ := labels[label.FindStringSubmatch(m)[1]].(string)
						return s
					})
				}
				e["exp_annotations"] = filled
			}
		}
	}
	out, err := yaml.Marshal(tests)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "alerts_test.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestDashboardAndAlertsUseExportedMetrics checks every metric name that a
// dashboard query or an alert rule uses against the metrics the service
// registers: a renamed or misspelled metric fails here, not in an empty panel
// or a silent alert.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	// Every process's metrics, with the collectors the API adds. Asynq's
	// collector describes what it collects: a queue with a task makes it
	// describe its metrics.
	m := metrics.New()
	rdb := redistest.Client(t)
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("noop", nil), asynq.Queue("reports")); err != nil {
		t.Fatal(err)
	}
	m.WatchQueues(asynq.NewInspectorFromRedisClient(rdb))
	m.WatchBatches(nil, nil)
	m.WatchBacklog(nil, nil)
	m.WatchDependencies(nil)
	exported := m.Names()

	queries := map[string][]string{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			queries[alertsFile] = append(queries[alertsFile], r.Expr)
		}
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			queries[dashboardFile] = append(queries[dashboardFile], target.Expr)
		}
	}
	if len(queries[alertsFile]) < 10 || len(queries[dashboardFile]) < 20 {
		t.Fatalf("read %d rules and %d panel queries: the files are not what the test expects", len(queries[alertsFile]), len(queries[dashboardFile]))
	}
	for file, exprs := range queries {
		for _, expr := range exprs {
			names := metricNames(expr)
			if len(names) == 0 {
				t.Errorf("%s: no metric in %q", file, expr)
			}
			for _, name := range names {
				if !exportedName(exported, name) {
					t.Errorf("%s: %q uses %s, which kycbatch does not export", file, expr, name)
				}
			}
		}
	}
}

// exportedName reports whether name is one of the exported metrics, or a
// histogram's series of one.
func exportedName(exported []string, name string) bool {
	if name == "up" { // Prometheus's own, for each scrape target
		return true
	}
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(exported, base) {
			return true
		}
	}
	return false
}

var (
	// What is not a metric name in PromQL: strings, label matchers and
	// lists, ranges, and the keywords and functions.
	promString  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promBraces  = regexp.MustCompile(`\{[^}]*\}`)
	promRange   = regexp.MustCompile(`\[[^\]]*\]`)
	promNumber  = regexp.MustCompile(`\b[0-9][0-9a-zA-Z_.]*`) // numbers and durations
	promLabels  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeyword = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)

// metricNames lists the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	for _, re := range []*regexp.Regexp{promString, promBraces, promRange, promLabels, promNumber} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(m[0])
		if m[1] != "" || slices.Contains(promKeyword, strings.ToLower(name)) {
			continue // a function, or a keyword
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`sum by (le, route) (rate(a_bucket{route="/x", s=~"5.."}[5m])) / on() scalar(b_total offset 5m) > 0.5 and up{job=~"k.*"} unless vector(0) or c`)
	want := []string{"a_bucket", "b_total", "up", "c"}
	if !slices.Equal(got, want) {
		t.Errorf("metricNames = %v, want %v", got, want)
	}
}
