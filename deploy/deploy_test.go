// Package deploy_test checks the deployment files: every YAML file parses,
// the Kubernetes manifests are complete and all listed in kustomization.yaml,
// and the compose file has the services the README promises. No services or
// cluster are needed: the files are only read.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

const (
	composeFile       = "docker-compose.yml"
	k8sDir            = "k8s"
	kustomizationFile = "k8s/kustomization.yaml"
)

// yamlFiles lists every *.yml and *.yaml file under deploy/ (the test's
// working directory), slash-separated and sorted.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yml" || ext == ".yaml") {
			files = append(files, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk deploy/: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under deploy/")
	}
	slices.Sort(files)
	return files
}

// loadAll decodes every document of a (possibly multi-document) YAML file
// into a T, skipping empty documents. Duplicate keys are errors.
func loadAll[T any](file string) ([]T, error) {
	data, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		return nil, err
	}
	l, err := yaml.NewLoader(bytes.NewReader(data), yaml.WithUniqueKeys(true))
	if err != nil {
		return nil, err
	}
	var docs []T
	for {
		var node yaml.Node
		err := l.Load(&node)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if isEmptyDoc(&node) {
			continue
		}
		var doc T
		if err := node.Load(&doc, yaml.WithUniqueKeys(true)); err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
}

// isEmptyDoc reports whether a document holds nothing (only comments, or a
// bare "---").
func isEmptyDoc(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		return len(n.Content) == 0 || isEmptyDoc(n.Content[0])
	}
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// mustLoad is loadAll for the tests that need the file to parse.
func mustLoad[T any](t *testing.T, file string) []T {
	t.Helper()
	docs, err := loadAll[T](file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return docs
}

// k8sFiles lists the Kubernetes manifests: the YAML files under k8s/, less
// kustomization.yaml.
func k8sFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, f := range yamlFiles(t) {
		if strings.HasPrefix(f, k8sDir+"/") && f != kustomizationFile {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		t.Fatal("no Kubernetes manifests under deploy/k8s")
	}
	return files
}

func TestYAMLParses(t *testing.T) {
	for _, file := range yamlFiles(t) {
		t.Run(file, func(t *testing.T) {
			docs, err := loadAll[any](file)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if len(docs) == 0 {
				t.Fatal("no YAML document")
			}
		})
	}
}

// object is the part of a Kubernetes object every manifest must have.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
}

func TestKubernetesObjects(t *testing.T) {
	seen := map[string]string{} // kind/name -> file
	for _, file := range k8sFiles(t) {
		t.Run(file, func(t *testing.T) {
			for i, o := range mustLoad[object](t, file) {
				for _, f := range []struct{ field, value string }{
					{"apiVersion", o.APIVersion},
					{"kind", o.Kind},
					{"metadata.name", o.Metadata.Name},
				} {
					if f.value == "" {
						t.Errorf("document %d: no %s", i+1, f.field)
					}
				}
				if o.Metadata.Namespace != "" {
					t.Errorf("document %d: metadata.namespace %q: the manifests are namespace-less", i+1, o.Metadata.Namespace)
				}
				id := o.Kind + "/" + o.Metadata.Name
				if other, ok := seen[id]; ok {
					t.Errorf("document %d: %s is also defined in %s", i+1, id, other)
				}
				seen[id] = file
			}
		})
	}
}

func TestKustomizationListsEveryFile(t *testing.T) {
	type kustomization struct {
		Resources []string `yaml:"resources"`
	}
	docs := mustLoad[kustomization](t, kustomizationFile)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", kustomizationFile, len(docs))
	}
	listed := map[string]bool{}
	for _, r := range docs[0].Resources {
		p := path.Join(k8sDir, r)
		if listed[p] {
			t.Errorf("%s lists %s twice", kustomizationFile, r)
		}
		listed[p] = true
		if _, err := os.Stat(filepath.FromSlash(p)); err != nil {
			t.Errorf("%s lists %s: %v", kustomizationFile, r, err)
		}
	}
	for _, file := range k8sFiles(t) {
		if !listed[file] {
			t.Errorf("%s is not listed in %s", file, kustomizationFile)
		}
	}
}

// workload is what the tests read of a Deployment or a Job.
type workload struct {
	object `yaml:",inline"`
	Spec   struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name     string `yaml:"name"`
		EmptyDir *struct {
			SizeLimit string `yaml:"sizeLimit"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]any `yaml:"requests"`
		Limits   map[string]any `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// workloads returns every Deployment and Job of the manifests.
func workloads(t *testing.T) []workload {
	t.Helper()
	var all []workload
	for _, file := range k8sFiles(t) {
		for _, w := range mustLoad[workload](t, file) {
			if w.Kind == "Deployment" || w.Kind == "Job" {
				all = append(all, w)
			}
		}
	}
	return all
}

func TestWorkloads(t *testing.T) {
	ws := workloads(t)
	var deployments []string
	for _, w := range ws {
		if w.Kind == "Deployment" {
			deployments = append(deployments, w.Metadata.Name)
		}
	}
	for _, want := range []string{"kycbatch-api", "kycbatch-worker"} {
		if !slices.Contains(deployments, want) {
			t.Errorf("no Deployment %s (have %v)", want, deployments)
		}
	}

	for _, w := range ws {
		t.Run(w.Kind+"/"+w.Metadata.Name, func(t *testing.T) {
			pod := w.Spec.Template.Spec
			if len(pod.Containers) == 0 {
				t.Fatal("no containers")
			}
			if sc := pod.SecurityContext.RunAsNonRoot; sc == nil || !*sc {
				t.Error("pod securityContext.runAsNonRoot is not true")
			}
			emptyDirs := map[string]bool{}
			for _, v := range pod.Volumes {
				if v.EmptyDir != nil {
					if v.EmptyDir.SizeLimit == "" {
						t.Errorf("emptyDir volume %s has no sizeLimit", v.Name)
					}
					emptyDirs[v.Name] = true
				}
			}
			check := func(c container, init bool) {
				kind := "container"
				if init {
					kind = "init container"
				}
				for _, r := range []string{"cpu", "memory"} {
					if c.Resources.Requests[r] == nil {
						t.Errorf("%s %s: no resources.requests.%s", kind, c.Name, r)
					}
					if c.Resources.Limits[r] == nil {
						t.Errorf("%s %s: no resources.limits.%s", kind, c.Name, r)
					}
				}
				if v := c.SecurityContext.AllowPrivilegeEscalation; v == nil || *v {
					t.Errorf("%s %s: securityContext.allowPrivilegeEscalation is not false", kind, c.Name)
				}
				if v := c.SecurityContext.ReadOnlyRootFilesystem; v == nil || !*v {
					t.Errorf("%s %s: securityContext.readOnlyRootFilesystem is not true", kind, c.Name)
				}
				for _, m := range c.VolumeMounts {
					if m.MountPath == "/tmp" && !emptyDirs[m.Name] {
						t.Errorf("%s %s: /tmp is not an emptyDir", kind, c.Name)
					}
				}
				if init || w.Kind != "Deployment" {
					return
				}
				for _, p := range []struct {
					name  string
					probe *probe
				}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}} {
					switch {
					case p.probe == nil:
						t.Errorf("container %s: no %s", c.Name, p.name)
					case p.probe.HTTPGet == nil || p.probe.HTTPGet.Path == "":
						t.Errorf("container %s: %s is not an HTTP GET of a path", c.Name, p.name)
					case !hasPort(c, p.probe.HTTPGet.Port):
						t.Errorf("container %s: %s port %v is not one of the container's ports", c.Name, p.name, p.probe.HTTPGet.Port)
					}
				}
			}
			for _, c := range pod.InitContainers {
				check(c, true)
			}
			for _, c := range pod.Containers {
				check(c, false)
			}
		})
	}
}

// hasPort reports whether port (a name or a number) is one of c's ports.
func hasPort(c container, port any) bool {
	for _, p := range c.Ports {
		switch v := port.(type) {
		case string:
			if v == p.Name {
				return true
			}
		case int:
			if v == p.ContainerPort {
				return true
			}
		}
	}
	return false
}

// TestGracePeriods checks that a stopping worker is given more time than
// SHUTDOWN_TIMEOUT lets its running tasks take, in Kubernetes and in compose.
func TestGracePeriods(t *testing.T) {
	type configMap struct {
		object `yaml:",inline"`
		Data   map[string]string `yaml:"data"`
	}
	var shutdown time.Duration
	for _, file := range k8sFiles(t) {
		for _, cm := range mustLoad[configMap](t, file) {
			if cm.Kind == "ConfigMap" && cm.Data["SHUTDOWN_TIMEOUT"] != "" {
				d, err := time.ParseDuration(cm.Data["SHUTDOWN_TIMEOUT"])
				if err != nil {
					t.Fatalf("%s: SHUTDOWN_TIMEOUT: %v", file, err)
				}
				shutdown = d
			}
		}
	}
	if shutdown == 0 {
		shutdown = 30 * time.Second // the default
	}
	for _, w := range workloads(t) {
		if w.Kind == "Deployment" && w.Metadata.Name == "kycbatch-worker" {
			g := w.Spec.Template.Spec.TerminationGracePeriodSeconds
			if g == nil || time.Duration(*g)*time.Second <= shutdown {
				t.Errorf("worker terminationGracePeriodSeconds %v: want more than SHUTDOWN_TIMEOUT %s", deref(g), shutdown)
			}
		}
	}

	c := loadCompose(t)
	d, err := time.ParseDuration(c.Services["worker"].Environment["SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("compose worker SHUTDOWN_TIMEOUT: %v", err)
	}
	g, err := time.ParseDuration(c.Services["worker"].StopGracePeriod)
	if err != nil || g <= d {
		t.Errorf("compose worker stop_grace_period %q: want more than SHUTDOWN_TIMEOUT %s", c.Services["worker"].StopGracePeriod, d)
	}
}

func deref(p *int) any {
	if p == nil {
		return "unset"
	}
	return *p
}

type compose struct {
	Env      map[string]string         `yaml:"x-kycbatch-env"`
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	docs := mustLoad[compose](t, composeFile)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", composeFile, len(docs))
	}
	return docs[0]
}

func TestComposeServices(t *testing.T) {
	const (
		healthy   = "service_healthy"
		completed = "service_completed_successfully"
	)
	c := loadCompose(t)
	if len(c.Env) == 0 {
		t.Fatal("no x-kycbatch-env")
	}
	for name, want := range map[string]string{
		"HTTP_ADDR":           "0.0.0.0:8080",
		"WORKER_METRICS_ADDR": "0.0.0.0:9091",
		"SUMSUB_APP_TOKEN":    "${SUMSUB_APP_TOKEN:?",
		"SUMSUB_SECRET_KEY":   "${SUMSUB_SECRET_KEY:?",
	} {
		if got := c.Env[name]; !strings.HasPrefix(got, want) {
			t.Errorf("x-kycbatch-env %s = %q, want %q…", name, got, want)
		}
	}

	tests := []struct {
		service     string
		kycbatch    bool // runs the kycbatch image with the shared environment
		healthcheck bool
		command     []string
		entrypoint  []string
		dependsOn   map[string]string
	}{
		{service: "postgres", healthcheck: true},
		{service: "redis", healthcheck: true},
		{service: "minio", healthcheck: true},
		{service: "minio-init", dependsOn: map[string]string{"minio": healthy}},
		{
			service: "migrate", kycbatch: true, command: []string{"migrate"},
			dependsOn: map[string]string{"postgres": healthy},
		},
		{
			service: "api", kycbatch: true,
			dependsOn: map[string]string{"migrate": completed, "redis": healthy, "minio": healthy},
		},
		{
			service: "worker", kycbatch: true, entrypoint: []string{"/usr/local/bin/worker"},
			dependsOn: map[string]string{"migrate": completed, "redis": healthy, "minio": healthy},
		},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			s, ok := c.Services[tt.service]
			if !ok {
				t.Fatalf("no service %s", tt.service)
			}
			if tt.healthcheck && (s.Healthcheck == nil || len(s.Healthcheck.Test) == 0) {
				t.Error("no healthcheck")
			}
			if tt.command != nil && !slices.Equal(s.Command, tt.command) {
				t.Errorf("command %q, want %q", s.Command, tt.command)
			}
			if tt.entrypoint != nil && !slices.Equal(s.Entrypoint, tt.entrypoint) {
				t.Errorf("entrypoint %q, want %q", s.Entrypoint, tt.entrypoint)
			}
			for dep, cond := range tt.dependsOn {
				if got := s.DependsOn[dep].Condition; got != cond {
					t.Errorf("depends_on %s: condition %q, want %q", dep, got, cond)
				}
			}
			if tt.kycbatch {
				if s.Build == nil || s.Image == "" {
					t.Error("not built from deploy/Dockerfile (want build and image)")
				}
				for name, want := range c.Env {
					if got := s.Environment[name]; got != want {
						t.Errorf("environment %s = %q, want x-kycbatch-env's %q", name, got, want)
					}
				}
			}
		})
	}
}
