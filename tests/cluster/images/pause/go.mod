module kata-deploy.local/pause

go 1.25
