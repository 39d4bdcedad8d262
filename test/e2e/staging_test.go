//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// deployStaging applies the staging demo (idempotent) and waits for it.
func deployStaging(t *testing.T) {
	t.Helper()
	ctx := framework.Context(t, 3*time.Minute)
	manifest := filepath.Join(framework.RepoRoot(), "test/apps/staging/manifests/staging.yaml")
	if err := cluster.Apply(ctx, manifest); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"postgres", "backend", "frontend"} {
		framework.Eventually(t, 2*time.Minute, func() error {
			dep, err := cluster.Client.AppsV1().Deployments("staging").Get(ctx, d, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if dep.Status.ObservedGeneration < dep.Generation || dep.Status.ReadyReplicas < *dep.Spec.Replicas ||
				dep.Status.UpdatedReplicas < *dep.Spec.Replicas {
				return fmt.Errorf("deployment %s: %d/%d ready", d, dep.Status.ReadyReplicas, *dep.Spec.Replicas)
			}
			return nil
		})
	}
}

// podOf returns the name of a ready pod of a staging app.
func podOf(t *testing.T, app string) string {
	t.Helper()
	pods, err := cluster.Client.CoreV1().Pods("staging").List(framework.Context(t, time.Minute),
		metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					return p.Name
				}
			}
		}
	}
	t.Fatalf("no ready pod of %s", app)
	return ""
}

func TestStagingStack(t *testing.T) {
	deployStaging(t)
	frontend := "http://" + cluster.PortForward(t, "staging", podOf(t, "frontend"), 8080)

	t.Run("frontend shows the backend's message", func(t *testing.T) {
		code, body := framework.HTTPGet(t, frontend+"/?user=alice")
		if code != 200 || !strings.Contains(body, "This is a silly demo") {
			t.Fatalf("frontend page: %d\n%s", code, body)
		}
	})

	id := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	title := "A video added by the e2e suite"
	t.Run("add a video through the frontend", func(t *testing.T) {
		code, body := framework.HTTPDo(t, "POST", frontend+"/add", url.Values{"id": {id}, "title": {title}})
		if code >= 400 {
			t.Fatalf("add: %d\n%s", code, body)
		}
	})
	t.Run("list videos through the frontend", func(t *testing.T) {
		code, body := framework.HTTPGet(t, frontend+"/videos")
		if code != 200 || !strings.Contains(body, id) || !strings.Contains(body, title) {
			t.Fatalf("videos page lacks %s: %d\n%s", id, code, body)
		}
	})
	t.Run("the row is in PostgreSQL", func(t *testing.T) {
		pg := cluster.PortForward(t, "staging", podOf(t, "postgres"), 5432)
		user, password, dbname := stagingCredentials(t)
		host, port, _ := net.SplitHostPort(pg)
		db, err := sql.Open("postgres", fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable",
			host, port, user, password, dbname))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var got string
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := db.QueryRowContext(ctx, "SELECT title FROM videos WHERE id = $1", id).Scan(&got); err != nil {
			t.Fatalf("query the row: %v", err)
		}
		if got != title {
			t.Fatalf("title in the database = %q, want %q", got, title)
		}
	})
}

// stagingCredentials reads the database credentials from the staging Secret.
func stagingCredentials(t *testing.T) (user, password, dbname string) {
	t.Helper()
	s, err := cluster.Client.CoreV1().Secrets("staging").Get(framework.Context(t, time.Minute), "postgres-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Data["POSTGRES_USER"]), string(s.Data["POSTGRES_PASSWORD"]), string(s.Data["POSTGRES_DB"])
}
