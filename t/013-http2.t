# HTTP/2 clients: a checkout over an HTTP/2 stream, a step cut off at its
# deadline, and clients that go away mid-checkout (HTTP/2 sets c->error at
# once, a known crash class for subrequest modules). The client is curl
# with --http2-prior-knowledge against a second server of the same nginx.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use Test::More ();
use Time::HiRes ();

CheckoutTest::use_mock_services();

$ENV{TEST_NGINX_H2_PORT} ||= CheckoutTest::free_port();

my $CART = '{"customerId":"cus_1","payment":{"method":"card","token":"tok_visa"}}';

# curl_h2(uris => [...], max => SECONDS, times slack()): a POST of the cart
# over HTTP/2 to each URI in turn, one curl run (and connection) each;
# returns the output, each transfer's body followed by "HTTP-VERSION
# STATUS", and how long it took.  (Debian 12's curl 7.88 breaks the
# framing of a second stream on an --http2-prior-knowledge connection
# against any server, so each request has its own connection here.)
sub curl_h2 {
    my (%o) = @_;
    my $t0 = Time::HiRes::time();
    my $text = '';
    for my $uri (@{ $o{uris} }) {
        open my $out, '-|', 'curl', '-s', '--http2-prior-knowledge',
             '-m', ($o{max} || 5) * CheckoutTest::slack(), '-H', 'Content-Type: application/json',
             '-w', '\n%{http_version} %{http_code}\n',
             '--data-binary', $CART,
             "http://127.0.0.1:$ENV{TEST_NGINX_H2_PORT}$uri"
            or die "curl: $!";
        local $/;
        $text .= <$out> // '';
        close $out;
    }
    return ($text, Time::HiRes::time() - $t0);
}

CheckoutTest::define_check(h2_confirmed => sub {
    my ($block) = @_;
    my $name = $block->name;
    my ($text) = curl_h2(uris => ['/checkout']);
    Test::More::like($text, qr/"status":"confirmed"/, "$name - confirmed");
    Test::More::like($text, qr/^2 201$/m, "$name - 201 over HTTP/2");
});

CheckoutTest::define_check(h2_cut_off => sub {
    my ($block) = @_;
    my $name = $block->name;

    # the slow checkout is cut off at 200 ms; the next one is served at once
    my ($text, $took) = curl_h2(uris => ['/checkout-slow', '/checkout']);
    Test::More::like($text, qr/"reason":"timeout"/, "$name - the slow stream is cut off");
    Test::More::like($text, qr/^2 503$/m, "$name - 503 over HTTP/2");
    Test::More::like($text, qr/^2 201$/m, "$name - the next checkout is confirmed");
    Test::More::cmp_ok($took, '<', 1 * CheckoutTest::slack(),
                       "$name - both answered well before the 10 s backend");
});

CheckoutTest::define_check(h2_client_gone => sub {
    my ($block) = @_;
    my $name = $block->name;

    # three clients give up while the payment step runs
    for (1 .. 3) {
        curl_h2(max => 0.2, uris => ['/checkout-slow']);
    }

    Time::HiRes::sleep(0.5 * CheckoutTest::slack());    # past the step's deadline

    my ($text) = curl_h2(uris => ['/checkout']);
    Test::More::like($text, qr/^2 201$/m, "$name - the next checkout is 201");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a checkout over HTTP/2 is confirmed
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location = /checkout {
            checkout;
            checkout_step validate  /_h2/cart/ok;
            checkout_step authorize /_h2/pay/ok;
            checkout_step create    /_h2/orders/ok;
        }
        location /_h2/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
        }
    }
--- config
    location = /ping { return 200 'pong'; }
--- request
GET /ping
--- response_body: pong
--- checkout_check: h2_confirmed
--- no_error_log
[error]



=== TEST 2: a step cut off on an HTTP/2 stream at its deadline
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location = /checkout {
            checkout;
            checkout_step validate  /_h2/cart/ok;
            checkout_step create    /_h2/orders/ok;
        }
        location = /checkout-slow {
            checkout;
            checkout_step authorize /_h2/pay/sleep10 timeout=200ms;
        }
        location /_h2/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
            proxy_read_timeout 60s;
        }
    }
--- config
    location = /ping { return 200 'pong'; }
--- request
GET /ping
--- response_body: pong
--- checkout_check: h2_cut_off
--- timeout: 5
--- error_log
upstream timed out after 200 ms, request cut off



=== TEST 3: HTTP/2 clients that go away mid-checkout leave nginx healthy
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT http2;
        location = /checkout {
            checkout;
            checkout_step validate  /_h2/cart/ok;
            checkout_step create    /_h2/orders/ok;
        }
        location = /checkout-slow {
            checkout;
            checkout_step authorize /_h2/pay/sleep10 timeout=300ms;
        }
        location /_h2/ {
            internal;
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/;
            proxy_read_timeout 60s;
        }
    }
--- config
    location = /ping { return 200 'pong'; }
--- request
GET /ping
--- response_body: pong
--- checkout_check: h2_client_gone
--- timeout: 5
--- wait: 0.3
--- no_error_log
[alert]
[crit]
