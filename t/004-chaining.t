# The step protocol: what each step receives (README "The step protocol").
#
# /_svc/echo is a mock service that answers
#   {"orderId":"ord_echo","stepGot":<the body it was sent>,"headers":{...}}
# so a checkout whose steps are echo services returns, in its confirmed reply
# (the last step's object), the document the last step got, which holds in
# its results the object of every earlier step, which holds the document that
# step got. The tests read the whole chain from the client's reply.

use Test::Nginx::Socket 'no_plan';
use FindBin ();
BEGIN { push @INC, "$FindBin::Bin/lib" }
use CheckoutTest ();
use Test::More ();

CheckoutTest::use_mock_services();

sub sent_cart {
    my ($block) = @_;
    my $req = $block->request;
    $req = $req->[0] if ref $req eq 'ARRAY';
    my ($body) = $req =~ /\n(.*)\z/s;
    return CheckoutTest::json_decode($body);
}

sub deep_is {
    my ($got, $want, $desc) = @_;
    Test::More::is(defined $got ? CheckoutTest::canon($got) : '<absent>',
                   CheckoutTest::canon($want), $desc);
}

# $lo and $hi in ms at scale 1 (CheckoutTest::slack()).
sub budget_between {
    my ($name, $doc, $lo, $hi, $what) = @_;
    ($lo, $hi) = map { $_ * CheckoutTest::slack() } $lo, $hi;
    my $b = ref $doc eq 'HASH' ? $doc->{budgetMs} : undef;
    Test::More::ok(defined $b && CheckoutTest::json_type($b) eq 'integer'
                   && $b > $lo && $b <= $hi,
                   "$name - $what budgetMs in ($lo, $hi]")
        or Test::More::diag("budgetMs: " . (defined $b ? $b : '<absent>'));
}

sub at {
    my ($doc, @path) = @_;
    for my $k (@path) {
        return undef unless ref $doc eq 'HASH';
        $doc = $doc->{$k};
    }
    return $doc;
}

# validate: /_svc/cart/ok, authorize: /_svc/echo (timeout=1200ms),
# create: /_svc/echo, checkout_timeout 2s
CheckoutTest::define_check(chain => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    return Test::More::fail("$name - reply is a JSON object") unless ref $doc eq 'HASH';
    my $create = at($doc, 'stepGot') || {};
    my $auth = at($create, qw(results authorize stepGot)) || {};
    my $cart = sent_cart($block);

    Test::More::like($doc->{checkoutId} || '', CheckoutTest::id_re(), "$name - reply id");
    Test::More::is($create->{checkoutId}, $doc->{checkoutId},
                   "$name - create step got the reply's checkoutId");
    Test::More::is($auth->{checkoutId}, $doc->{checkoutId},
                   "$name - authorize step got the same checkoutId");

    deep_is($auth->{cart}, $cart, "$name - authorize step got the cart as sent");
    deep_is($create->{cart}, $cart, "$name - create step got the cart as sent");

    budget_between($name, $auth, 1000, 1200, 'authorize (timeout=1200ms)');
    budget_between($name, $create, 1500, 2000, 'create (budget 2s)');

    for my $k (qw(checkoutId idempotencyKey step budgetMs cart results)) {
        Test::More::ok(exists $auth->{$k}, "$name - the authorize document has $k");
    }
});

# validate: /_svc/echo timeout=300ms, create: /_svc/echo
CheckoutTest::define_check(first_step => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    return Test::More::fail("$name - reply is a JSON object") unless ref $doc eq 'HASH';
    my $got = at($doc, qw(stepGot results validate stepGot)) || {};
    deep_is($got->{results}, {}, "$name - the first step's results is {}");
    budget_between($name, $got, 250, 300, 'validate (timeout=300ms)');
    deep_is($got->{cart}, sent_cart($block), "$name - validate got the cart");
    Test::More::is($got->{checkoutId}, $doc->{checkoutId}, "$name - validate got the id");
});

CheckoutTest::define_check(cart_intact => sub {
    my ($block, $body, $doc) = @_;
    my $name = $block->name;
    return Test::More::fail("$name - reply is a JSON object") unless ref $doc eq 'HASH';
    my $cart = sent_cart($block);
    Test::More::ok($cart, "$name - the test's cart is JSON");
    deep_is(at($doc, qw(stepGot cart)), $cart,
            "$name - the last step got the cart as sent");
    deep_is(at($doc, qw(stepGot results authorize stepGot cart)), $cart,
            "$name - the step before got it too");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the payment step gets the cart step's result, the cart as sent, id, budget, step name
--- config
    location = /checkout {
        checkout;
        checkout_timeout 2s;
        checkout_step validate  /_svc/cart/ok timeout=300ms;
        checkout_step authorize /_svc/echo    timeout=1200ms on_timeout=pending;
        checkout_step create    /_svc/echo;
    }
--- more_headers
Content-Type: application/json; charset=utf-8
Idempotency-Key: k-123
X-Trace-Id: t-1
Authorization: Bearer abc
Accept-Encoding: gzip
If-Match: "e1"
If-None-Match: "e2"
If-Modified-Since: Wed, 21 Oct 2015 07:28:00 GMT
If-Range: "e3"
Range: bytes=0-10
--- request
POST /checkout
{"customerId":"cus_1","currency":"EUR","total":1,
 "items":[{"sku":"book-1","quantity":2,"unitPrice":1250}],
 "payment":{"method":"card","token":"tok_visa"}}
--- error_code: 201
--- checkout_json
status: "confirmed"
orderId: "ord_echo"
stepGot.step: "create"
stepGot.idempotencyKey: "k-123"
stepGot.results.validate: {"total":2500,"currency":"EUR"}
stepGot.results.authorize.orderId: "ord_echo"
stepGot.results.authorize.stepGot.step: "authorize"
stepGot.results.authorize.stepGot.idempotencyKey: "k-123"
stepGot.results.authorize.stepGot.results: {"validate":{"total":2500,"currency":"EUR"}}
stepGot.results.authorize.stepGot.cart.total: 1
stepGot.results.authorize.headers.method: "POST"
stepGot.results.authorize.headers.contentType: "application/json"
stepGot.results.authorize.headers.contentLength =~ ^[1-9][0-9]*$
stepGot.results.authorize.headers.transferEncoding: ""
stepGot.results.authorize.headers.idempotencyKey: "k-123"
stepGot.results.authorize.headers.traceId: "t-1"
stepGot.results.authorize.headers.authorization: "Bearer abc"
stepGot.results.authorize.headers.acceptEncoding: ""
stepGot.results.authorize.headers.ifMatch: ""
stepGot.results.authorize.headers.ifNoneMatch: ""
stepGot.results.authorize.headers.ifModifiedSince: ""
stepGot.results.authorize.headers.ifRange: ""
stepGot.results.authorize.headers.range: ""
headers.method: "POST"
headers.contentType: "application/json"
--- checkout_check: chain
--- no_error_log
[error]



=== TEST 2: the first step's results is an empty object; its budget is its own timeout; no key is null
--- config
    location = /checkout {
        checkout;
        checkout_timeout 2s;
        checkout_step validate /_svc/echo timeout=300ms;
        checkout_step create   /_svc/echo;
    }
--- request
POST /checkout
{"customerId":"cus_1","items":[{"sku":"book-1","quantity":2,"unitPrice":1250}]}
--- error_code: 201
--- checkout_json
status: "confirmed"
stepGot.step: "create"
stepGot.idempotencyKey: null
stepGot.results.validate.stepGot.step: "validate"
stepGot.results.validate.stepGot.idempotencyKey: null
stepGot.results.validate.headers.contentType: "application/json"
stepGot.results.validate.headers.idempotencyKey: ""
--- checkout_check: first_step
--- no_error_log
[error]



=== TEST 3: steps are POSTed as application/json even for a +json client type; the step sees every earlier result
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/pay/ok;
        checkout_step create    /_svc/echo;
    }
--- more_headers
Content-Type: application/vnd.shop.checkout+json
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- checkout_json
stepGot.results: {"validate":{"total":2500,"currency":"EUR"},"authorize":{"status":"authorized","authorizationId":"auth_1","amount":2500}}
stepGot.step: "create"
stepGot.cart: {"customerId":"cus_1"}
headers.contentType: "application/json"
headers.method: "POST"
--- no_error_log
[error]



=== TEST 4: a 12 KB cart with every JSON type and non-ASCII text travels intact through two steps
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/ok;
        checkout_step authorize /_svc/echo;
        checkout_step create    /_svc/echo;
    }
--- request eval
my @items = map { {sku => "sku-$_", quantity => $_, unitPrice => 1250 + $_,
                   name => "Bücher № $_ — “quoted” \\ \t end",
                   tags => ["a", "b"], gift => ($_ % 2 ? \1 : \0),
                   note => undef, weight => -12.5} } 1 .. 40;
my $cart = {customerId => "cus_1", currency => "EUR", items => \@items,
            payment => {method => "card", token => "tok_visa"},
            empty => {}, none => [], nested => {a => [1, [2, [3, {b => "\x{1F600}"}]]]}};
"POST /checkout\n" . JSON::PP->new->utf8->canonical->encode($cart)
--- error_code: 201
--- checkout_json
status: "confirmed"
stepGot.step: "create"
--- checkout_check: cart_intact
--- no_error_log
[error]



=== TEST 5: steps run one after the other: the second starts after the first has answered
--- config
    location = /checkout {
        checkout;
        checkout_step validate  /_svc/cart/slow;
        checkout_step create    /_svc/echo;
    }
--- request
POST /checkout
{"customerId":"cus_1"}
--- error_code: 201
--- response_headers_like
Server-Timing: validate;dur=(29\d|[3-6]\d\d)(\.\d+)?,\s*create;dur=\d+(\.\d+)?,\s*total;dur=(29\d|[3-7]\d\d)(\.\d+)?
--- checkout_json
stepGot.results.validate: {"total":2500,"currency":"EUR"}
--- no_error_log
[error]
