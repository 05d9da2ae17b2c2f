package worker_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/kycbatch/kycbatch/internal/imports"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/worker"
)

// TestDashboardInABrowser logs in to the Asynq dashboard in headless
// Chromium while a batch imports at 10/s: the queues page lists every
// queue, the sumsub queue's page shows the batch's record tasks at work
// (the screenshot, saved also to $SCREENSHOT_DIR when set: the README's),
// and once the batch is done, its report's build task shows among the
// reports queue's completed tasks.
func TestDashboardInABrowser(t *testing.T) {
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("chromium not installed (.ci/run installs it)")
		}
		t.Fatal("chromium not installed")
	}
	e := apitest.New(t, apitest.Options{Monitoring: true, SumsubRate: 10})
	e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	batchID := e.UploadBatch(t, key, apitest.CSVFile("dash", e.Entities(t, key, 150)))
	// Without the ops credentials, no dashboard.
	for _, auth := range []string{"", "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:wrong"))} {
		req, _ := http.NewRequest(http.MethodGet, e.URL+"/monitoring/", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if r := e.Do(t, req); r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("dashboard with Authorization %q: %d", auth, r.Status)
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 1000))
	allocCtx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()

	login := base64.StdEncoding.EncodeToString([]byte(e.API.Monitoring.User + ":" + e.API.Monitoring.Password))
	// The first call starts the browser: it gets no deadline (see chromedp.Run).
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + login},
	}); err != nil {
		t.Fatalf("browser: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx,
		chromedp.Navigate(e.URL+"/monitoring/"),
		chromedp.WaitVisible(`//*[contains(text(), "maintenance")]`),
	); err != nil {
		t.Fatalf("queues page: %v", err)
	}
	queuesText, err := chromedp.Run(tctx, chromedp.Text("body"))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tctx,
		chromedp.Navigate(e.URL+"/monitoring/queues/"+imports.Queue+"?status=active"),
		chromedp.WaitVisible(`//*[contains(text(), "`+imports.TypeImport+`")]`),
	); err != nil {
		t.Fatalf("active tasks of queue sumsub during the batch: %v", err)
	}
	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	e.WaitBatch(t, key, batchID, 60*time.Second)
	r := e.Call(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", key, map[string]string{"client_id": batchID})
	reportID := r.JSON(t)["data"].(map[string]any)["client_id"].(string)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		d := e.Call(t, http.MethodGet, "/api/v1/stamper-v2/bulk-usage-report/download?client_id="+reportID, key, nil).JSON(t)
		if d["data"].(map[string]any)["status"] == "success" || time.Now().After(deadline) {
			break
		}
	}

	if err := chromedp.Do(tctx,
		chromedp.Navigate(e.URL+"/monitoring/queues/reports?status=completed"),
		chromedp.WaitVisible(`//*[contains(text(), "report:build")]`),
	); err != nil {
		t.Fatalf("completed tasks of queue reports: %v", err)
	}
	tasksText, err := chromedp.Run(tctx, chromedp.Text("body"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range worker.Queues {
		if !strings.Contains(queuesText, q) {
			t.Errorf("the queues page does not show queue %q", q)
		}
	}
	if !strings.Contains(tasksText, "report:build") {
		t.Error("the completed tasks of queue reports do not show the report's build task")
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		path := filepath.Join(d, "dashboard.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
}
