package main

import "html/template"

// pages are the frontend's HTML; html/template escapes everything that
// comes from users or the backend.
var pages = template.Must(template.New("layout").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Staging demo</title></head>
<body>
{{block "content" .}}{{end}}
<p><a href="/">Home</a> | <a href="/add">Add a video</a> | <a href="/videos">List videos</a></p>
</body></html>
`))

func page(content string) *template.Template {
	return template.Must(template.Must(pages.Clone()).Parse(`{{define "content"}}` + content + `{{end}}`))
}

var (
	indexPage = page(`<h1>{{.Greeting}}</h1>`)

	addPage = page(`<h1>Add a video</h1>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<form method="post" action="/add">
<label>ID <input name="id" value="{{.ID}}"></label>
<label>Title <input name="title" value="{{.Title}}"></label>
<button type="submit">Add</button>
</form>`)

	addedPage = page(`<h1>Video added</h1>
<p>Added <b>{{.ID}}</b>: {{.Title}} ({{.CreatedAt.Format "2006-01-02 15:04:05 MST"}})</p>`)

	videosPage = page(`<h1>Videos</h1>
{{if .}}<table>
<tr><th>ID</th><th>Title</th><th>Added</th></tr>
{{range .}}<tr><td>{{.ID}}</td><td>{{.Title}}</td><td>{{.CreatedAt.Format "2006-01-02 15:04:05 MST"}}</td></tr>
{{end}}</table>{{else}}<p>No videos yet.</p>{{end}}`)

	errorPage = page(`<h1>Something went wrong</h1>
<p class="error">{{.}}</p>`)
)
