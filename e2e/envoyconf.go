package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// socketAddr is one socket_address mapping of an Envoy config and where it sits.
type socketAddr struct {
	path    string // e.g. admin.address.socket_address
	address *yaml.Node
	port    *yaml.Node
	admin   bool
	inLis   bool // under static_resources.listeners
}

// envoySockets finds every socket_address in an Envoy bootstrap config.
func envoySockets(root *yaml.Node) ([]*socketAddr, error) {
	var out []*socketAddr
	var walk func(n *yaml.Node, path string, admin, lis bool) error
	walk = func(n *yaml.Node, path string, admin, lis bool) error {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for i, c := range n.Content {
				p := path
				if n.Kind == yaml.SequenceNode {
					p = fmt.Sprintf("%s[%d]", path, i)
				}
				if err := walk(c, p, admin, lis); err != nil {
					return err
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				p := k
				if path != "" {
					p = path + "." + k
				}
				if k == "socket_address" {
					sa := &socketAddr{path: p, admin: admin, inLis: lis}
					for j := 0; j+1 < len(v.Content); j += 2 {
						switch v.Content[j].Value {
						case "address":
							sa.address = v.Content[j+1]
						case "port_value":
							sa.port = v.Content[j+1]
						}
					}
					if sa.address == nil || sa.port == nil {
						return fmt.Errorf("%s: want address and port_value", p)
					}
					out = append(out, sa)
					continue
				}
				if err := walk(v, p, admin || (path == "" && k == "admin"),
					lis || (path == "static_resources" && k == "listeners")); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, "", false, false); err != nil {
		return nil, err
	}
	return out, nil
}

func parseEnvoyYAML(data []byte) (*yaml.Node, []*socketAddr, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, err
	}
	socks, err := envoySockets(&root)
	return &root, socks, err
}

// envoyListenPorts returns the admin port and the listener ports.
func envoyListenPorts(data []byte) (admin int, listeners []int, err error) {
	_, socks, err := parseEnvoyYAML(data)
	if err != nil {
		return 0, nil, err
	}
	for _, s := range socks {
		port, err := strconv.Atoi(s.port.Value)
		if err != nil {
			return 0, nil, fmt.Errorf("%s.port_value %q", s.path, s.port.Value)
		}
		switch {
		case s.admin:
			admin = port
		case s.inLis:
			listeners = append(listeners, port)
		}
	}
	if admin == 0 {
		return 0, nil, errors.New("no admin socket_address (the harness needs the admin interface for /ready and stats)")
	}
	if len(listeners) == 0 {
		return 0, nil, errors.New("no listener")
	}
	return admin, listeners, nil
}

// rewriteEnvoy returns the config with every socket_address passed through remap.
func rewriteEnvoy(data []byte, remap func(host string, port int) (string, int, error)) ([]byte, error) {
	root, socks, err := parseEnvoyYAML(data)
	if err != nil {
		return nil, err
	}
	for _, s := range socks {
		port, err := strconv.Atoi(s.port.Value)
		if err != nil {
			return nil, fmt.Errorf("%s.port_value %q", s.path, s.port.Value)
		}
		h, p, err := remap(s.address.Value, port)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.path, err)
		}
		s.address.Value, s.port.Value = h, strconv.Itoa(p)
		s.address.Style, s.port.Style = 0, 0
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
