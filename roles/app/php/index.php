<?php
// imgforge default application: reads one row from the database primary to
// show that every tier of the stack works. Settings come from boot data,
// rendered by imgforge-agent into /etc/imgforge/db.json.
//
// /cached is the one route the web nodes may cache (for 60 s); every other
// answer, and every error, says no-store. /replica reads the same row from
// the db replica db.json names ("replica": {host, port}), read-only, and
// from the primary when it names none; its answer says which host
// answered. The uWSGI app (app.py) answers the same.
//
// Each request's span (OpenTelemetry, OTLP/JSON) goes to the node's agent
// on loopback (127.0.0.1:4318) once the answer has been sent; its trace id
// is the one in the traceparent nginx passes (HTTP_TRACEPARENT). The agent
// forwards it to the traces endpoint given at boot, or nowhere.
$start = microtime(true);
register_shutdown_function('imgforge_span', $start);
header('Content-Type: text/plain; charset=utf-8');
$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
$cacheable = $path === '/cached';
header('Cache-Control: no-store');
$cfgFile = getenv('IMGFORGE_DB_CONFIG') ?: '/etc/imgforge/db.json';
$cfg = json_decode(@file_get_contents($cfgFile), true);
if (!is_array($cfg)) {
    http_response_code(503);
    echo "no database configured yet\n";
    exit;
}
// The server a request reads from: the primary, or on /replica the
// replica when one is configured.
$server = ['host' => $cfg['host'], 'port' => $cfg['port'] ?? 3306];
$from = '';
if ($path === '/replica') {
    $from = 'primary';
    if (is_array($cfg['replica'] ?? null) && isset($cfg['replica']['host'])) {
        $server = ['host' => $cfg['replica']['host'], 'port' => $cfg['replica']['port'] ?? 3306];
        $from = 'replica';
    }
}
try {
    $dsn = sprintf('mysql:host=%s;port=%d;dbname=%s;charset=utf8mb4',
        $server['host'], $server['port'], $cfg['database'] ?? 'imgforge');
    $db = new PDO($dsn, $cfg['user'], $cfg['password'], [PDO::ATTR_TIMEOUT => 3]);
    $row = $db->query('SELECT message FROM greeting ORDER BY id LIMIT 1')->fetch(PDO::FETCH_ASSOC);
    if ($cacheable) {
        header('Cache-Control: public, max-age=60');
    }
    $message = $row ? $row['message'] : 'no rows';
    if ($from !== '') {
        printf("%s (served by %s, read from the %s %s)\n", $message, gethostname(), $from, $server['host']);
    } else {
        printf("%s (served by %s)\n", $message, gethostname());
    }
} catch (Throwable $e) {
    http_response_code(502);
    echo "database error: ", $e->getMessage(), "\n";
}

// imgforge_span sends this request's span, after the answer.
function imgforge_span(float $start): void
{
    if (function_exists('fastcgi_finish_request')) {
        fastcgi_finish_request();
    }
    $end = microtime(true);
    $tp = $_SERVER['HTTP_TRACEPARENT'] ?? '';
    if (preg_match('/^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/', $tp, $m)
        && $m[1] !== str_repeat('0', 32) && $m[2] !== str_repeat('0', 16)) {
        [$trace, $parent] = [$m[1], $m[2]];
    } else {
        [$trace, $parent] = [bin2hex(random_bytes(16)), ''];
    }
    $status = http_response_code();
    $path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
    $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
    $attr = fn(string $k, array $v) => ['key' => $k, 'value' => $v];
    $span = [
        'traceId' => $trace,
        'spanId' => bin2hex(random_bytes(8)),
        'name' => $method . ' ' . $path,
        'kind' => 2,
        'startTimeUnixNano' => sprintf('%.0f', $start * 1e9),
        'endTimeUnixNano' => sprintf('%.0f', $end * 1e9),
        'attributes' => [
            $attr('http.request.method', ['stringValue' => $method]),
            $attr('url.path', ['stringValue' => $path]),
            $attr('http.response.status_code', ['intValue' => (string)$status]),
        ],
        'status' => ['code' => $status >= 500 ? 2 : 0],
    ];
    if ($parent !== '') {
        $span['parentSpanId'] = $parent;
    }
    $body = json_encode(['resourceSpans' => [[
        'resource' => ['attributes' => [
            $attr('service.name', ['stringValue' => 'imgforge-app']),
            $attr('host.name', ['stringValue' => gethostname()]),
        ]],
        'scopeSpans' => [['scope' => ['name' => 'imgforge-app'], 'spans' => [$span]]],
    ]]], JSON_UNESCAPED_SLASHES);
    // The agent answers at once; without one (no traces endpoint), the
    // connection is refused at once.
    @file_get_contents('http://127.0.0.1:4318/v1/traces', false, stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Content-Type: application/json\r\n",
        'content' => $body,
        'timeout' => 1,
        'ignore_errors' => true,
    ]]));
}
