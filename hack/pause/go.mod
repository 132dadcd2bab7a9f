module sigil.local/pause

go 1.24
